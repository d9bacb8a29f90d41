"""P2's report: P(err < 5 m) of every method at every R, with MetaLoc's published figures beside them."""

from __future__ import annotations

from xloc.bench.leave_one_out import p_within_table


def test_p_within_table_has_every_method_at_every_r_and_the_papers_figures():
    rows = [{"protocol": "p2", "target": "all", "k": r, "method": m, "p_within_5m": p}
            for r, m, p in [(10, "maml", 0.7), (20, "maml", 0.85), (10, "knn", 0.5), (20, "knn", 0.8)]]
    rows.append({"protocol": "p2", "target": "a", "k": 10, "method": "maml", "p_within_5m": 0.1})  # per target
    table = p_within_table(rows).splitlines()
    assert table[0] == "| method | R = 10 | R = 20 | paper, R = 10 |"
    assert table[2] == "| maml | 0.70 | 0.85 | 0.89 |" and table[3] == "| knn | 0.50 | 0.80 | 0.51 |"
