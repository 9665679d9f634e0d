"""LifecycleZero endpoint agent: discovery of local AI engines and models, and host containment."""
