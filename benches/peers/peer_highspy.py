"""Solve the benchmark instances with HiGHS through highspy, as a Python user would."""

import json
import sys
import time

import highspy

import model

INF = highspy.kHighsInf


def solve(problem, orders=None, time_limit=None):
    t = time.perf_counter()
    cols, rows = model.build(problem, orders)
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("mip_rel_gap", 0.0)
    if time_limit:
        h.setOptionValue("time_limit", float(time_limit))
    for cost, ub, _ in cols:
        h.addVar(0.0, float(ub))
    n = len(cols)
    h.changeColsCost(n, list(range(n)), [float(c) for c, _, _ in cols])
    h.changeColsIntegrality(n, list(range(n)), [highspy.HighsVarType.kInteger] * n)
    for terms, sense, rhs in rows:
        lo = float(rhs) if sense == "=" else -INF
        h.addRow(lo, float(rhs), len(terms), [v for v, _ in terms], [c for _, c in terms])
    h.run()
    ms = (time.perf_counter() - t) * 1000.0
    status = h.modelStatusToString(h.getModelStatus())
    values = list(h.getSolution().col_value)
    gap = h.getInfo().mip_gap
    return ms, model.exact_cost(cols, values), status, gap


def main(directory):
    out = {}
    p = model.load(f"{directory}/per_order.json")
    solve(p, [p["orders"][0]])  # warm-up
    times, total = [], 0
    for o in p["orders"]:
        ms, cost, _, _ = solve(p, [o])
        times.append(ms)
        total += cost
    times.sort()
    out["per_order"] = {
        "p50_ms": model.percentile(times, 50),
        "p99_ms": model.percentile(times, 99),
        "total_cost": str(round(total, 4)),
    }
    for name in ["batch_50_tight", "batch_100_tight", "batch_200_tight", "batch_100_ample"]:
        ms, cost, status, gap = solve(model.load(f"{directory}/{name}.json"), time_limit=60)
        out[name] = {"ms": ms, "cost": str(round(cost, 4)), "status": status, "gap": gap}
    json.dump(out, sys.stdout, indent=2)


if __name__ == "__main__":
    main(sys.argv[1])
