"""Prometheus, Alertmanager and Grafana (kube-prometheus-stack), and Grafana dashboards as data."""
