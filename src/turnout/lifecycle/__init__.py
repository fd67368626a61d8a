"""The control plane's business rules: deployments, revisions, rollouts, retraining."""
