"""Running a job's work as shards of a split: the plan of units, executors (Ray, SLURM)."""
