"""Learned rankers inside a policy: per Choices control, a model trained on the policy's own demos that ranks the
control's labels with calibrated probabilities (``ranker``), built once per pool and process (``cache``).

The ranker modules import scikit-learn; :func:`cache.ranker_for` imports them on first use, so a process whose
policies never use a ranker never pays for it.
"""
