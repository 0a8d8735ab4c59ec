"""cifar-tune analysis: experiment directory -> DataFrame -> tables, evaluation and the plotly report."""
