#!/bin/bash
# Interleaved side-by-side: base engine (67a2442, before issue 18) vs main, same bench script.
cd /work/main
PY=/work/main/.venv/bin/python
OUT="$OUT"
for s in f g; do
  for p in 1 2 3; do
    for who in base main; do
      if [ $who = base ]; then E=/tmp/wt-base; else E=/work/main; fi
      echo "$(date +%T) $s pair $p $who load=$(cut -d' ' -f1 /proc/loadavg)" >> $OUT/log.txt
      PYTHONPATH=$E $PY bench/run.py --scenario $s --repeat 1 --validate-runs 0 --json $OUT/$s-$p-$who.json > $OUT/$s-$p-$who.txt 2>&1
    done
  done
done
echo "$(date +%T) i load=$(cut -d' ' -f1 /proc/loadavg)" >> $OUT/log.txt
PYTHONPATH=/work/main $PY bench/run.py --scenario i --repeat 2 --validate-runs 0 --json $OUT/i.json > $OUT/i.txt 2>&1
echo "$(date +%T) done load=$(cut -d' ' -f1 /proc/loadavg)" >> $OUT/log.txt
