"""One model served by vLLM: its Deployment, Service, secrets, budgets, monitors, alerts and dashboard."""
