# Busy while Slurm runs a job on this node.
node=$(hostname -s)
jobs=$(squeue --noheader --nodelist="$node" --states=running,completing,configuring --format=%i 2>/dev/null | tr '\n' ' ')
if [ -n "$jobs" ]; then
  echo "Slurm jobs running here: $jobs"
  exit 0
fi
exit 1
