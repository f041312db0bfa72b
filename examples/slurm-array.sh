#!/bin/bash
# fetcher as a Slurm job array: four tasks, each fetching its own shard of one URL list.
#
#   sbatch examples/slurm-array.sh          # from the folder that holds urls.txt
#   cat records-*.jsonl > records.jsonl     # once every task has ended (squeue -j JOBID is empty)
#
# Each task writes its own records, summary and --failed lines beside urls.txt; the summary on
# standard error goes to fetcher-<task>.log. A task whose fetcher exits 1 (some URLs failed) or
# 3 (all failed) shows as FAILED in sacct: its records say which. fetcher must be on the PATH of
# the compute nodes (pipx install, or activate a virtualenv on a shared file system here).
# To use another number of shards, change --array=0-(N-1) and the /4 below together.
#SBATCH --job-name=fetcher
#SBATCH --array=0-3
#SBATCH --cpus-per-task=2
#SBATCH --time=02:00:00
#SBATCH --output=fetcher-%a.log

shard=$SLURM_ARRAY_TASK_ID
exec fetcher -i urls.txt --shard "$shard/4" --format jsonl \
    --results "records-$shard.jsonl" --summary "summary-$shard.json" --failed "failed-$shard.txt"
