"""Operating lssm-jobs: JSON logs without credentials, health and metrics endpoints, the Prometheus event
sink and OpenTelemetry traces (the last two need their optional extras). See ``docs/operations.md``."""
