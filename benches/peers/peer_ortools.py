"""Solve the benchmark instances with OR-Tools CP-SAT, as a Python user would.

CP-SAT takes integer objectives: every cost in these instances has at most 5 decimals, so
scaling by 10^5 is exact.
"""

import json
import sys
import time

from ortools.sat.python import cp_model

import model

SCALE = 100_000


def solve(problem, orders=None, time_limit=None):
    t = time.perf_counter()
    cols, rows = model.build(problem, orders)
    m = cp_model.CpModel()
    xs = [m.new_int_var(0, ub, f"v{i}") for i, (_, ub, _) in enumerate(cols)]
    for terms, sense, rhs in rows:
        expr = sum(int(c) * xs[v] for v, c in terms)
        if sense == "=":
            m.add(expr == int(rhs))
        else:
            m.add(expr <= int(rhs))
    m.minimize(sum(int(c * SCALE) * x for (c, _, _), x in zip(cols, xs)))
    solver = cp_model.CpSolver()
    if time_limit:
        solver.parameters.max_time_in_seconds = float(time_limit)
    status = solver.solve(m)
    ms = (time.perf_counter() - t) * 1000.0
    values = [solver.value(x) for x in xs]
    bound = solver.best_objective_bound
    obj = solver.objective_value
    gap = 0.0 if obj == 0 else abs(obj - bound) / abs(obj)
    return ms, model.exact_cost(cols, values), solver.status_name(status), gap


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
