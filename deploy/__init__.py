"""Deployment: Kubernetes manifests (k8s/), the AWS template and its generator (aws/)."""
