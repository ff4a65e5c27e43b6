"""Background jobs: the jobs table as queue and record, workers, tasks, periodic scheduler (docs/jobs.md)."""
