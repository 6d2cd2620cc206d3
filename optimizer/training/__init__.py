"""The RQ side: webhooks turned into jobs, the jobs themselves, the training run, re-prediction, the worker."""
