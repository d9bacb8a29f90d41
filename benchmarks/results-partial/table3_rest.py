"""Table III, hall, seed 0: the methods after MAML-TS (run out of order to fit this session; the bench's --resume
skips every (seed, method) already here). Run from a worktree at the rows' commit."""
import sys
from pathlib import Path

from xloc.bench.metaloc import CSI_TABLE_ITERATIONS, CSI_TABLE_PATIENCE, csi_image_table
from xloc.eval.results import read_results, write_results

out = Path("/work/out/tableIII/metaloc-csi.json")
command = "python /work/out/table3_rest.py  # csi_image_table('hall', seeds=(0,), methods=('maml-dg', 'tl', 'ri'))"
finished = read_results(out).get("rows", [])
import time
t0 = time.perf_counter()

def write(rows):
    write_results(out, rows, command=command, seeds=[0], wall_s=time.perf_counter() - t0, append=True)

csi_image_table("hall", seeds=(0,), methods=("maml-dg", "tl", "ri"), iterations=CSI_TABLE_ITERATIONS,
                patience=CSI_TABLE_PATIENCE, out_dir=out.parent, on_row=write, finished=finished)
