"""The RQ side: the job queue and its typed kinds, webhooks turned into jobs, the job functions, the training run,
bulk pre-annotation and the worker process."""
