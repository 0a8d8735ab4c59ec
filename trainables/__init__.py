"""cifar-tune: everything that runs inside one trial (data, models, training loop, SVM baseline)."""
