"""cifar-tune search: experiment spec, Tuner (OptunaSearch + ASHA), local/cluster, resume, and the CLI."""
