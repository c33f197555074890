"""Print the side-by-side table (Markdown) from ours.json, highspy.json and ortools.json."""

import json
import sys
from decimal import Decimal


def load(directory, name):
    try:
        with open(f"{directory}/{name}.json") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def pct(cost, best):
    return f"{(Decimal(cost) - best) / best * 100:+.2f}%"


def main(directory):
    ours, highs, cpsat = (load(directory, n) for n in ("ours", "highspy", "ortools"))
    po = ours["per_order"]
    print(f"Per order: {po['orders']} orders of 5 lines, 20 warehouses, tight stock; each order "
          "solved alone against full stock (model build + solve).\n")
    print("| solver | p50 ms | p99 ms | total cost | vs best |")
    print("| --- | ---: | ---: | ---: | ---: |")
    costs = [Decimal(po["total_cost"])]
    costs += [Decimal(x["per_order"]["total_cost"]) for x in (highs, cpsat) if "per_order" in x]
    best = min(costs)
    print(f"| oms optimal (subset search, good_lp + microlp fallback) | {po['p50_ms']:.3f} | "
          f"{po['p99_ms']:.3f} | {po['total_cost']} | {pct(po['total_cost'], best)} |")
    for label, x in (("HiGHS (highspy)", highs), ("OR-Tools CP-SAT", cpsat)):
        if "per_order" in x:
            p = x["per_order"]
            print(f"| {label} | {p['p50_ms']:.3f} | {p['p99_ms']:.3f} | {p['total_cost']} | "
                  f"{pct(p['total_cost'], best)} |")
    for g in ("nearest", "priority"):
        print(f"| oms {g} (greedy) | | | {po['greedy'][g]} | {pct(po['greedy'][g], best)} |")
    if "subset_search_orders" in po:
        print(f"\noms: the subset search decided {po['subset_search_orders']} of {po['orders']} "
              f"orders without the MIP; per order, fastest of its 5 solves: p50 "
              f"{po['best_of_5_p50_ms']:.3f} ms, p99 {po['best_of_5_p99_ms']:.3f} ms.")
    print("\nBatch: all orders at once, shared stock. oms batch = price-and-repair (6 Lagrangian "
          "rounds of exact per-order solves) then the batch MIP warm-started from it with a 200 ms "
          "limit; its bound gap is against its own Lagrangian lower bound. Peers solve the full MIP "
          "with a 60 s limit. Gaps in the last three columns are to the best cost any solver found."
          "\n")
    print("| instance | oms batch | oms per-order seq. | HiGHS | CP-SAT | best | oms batch gap "
          "| nearest gap | priority gap |")
    print("| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: |")
    for name in ("batch_50_tight", "batch_100_tight", "batch_200_tight", "batch_100_ample"):
        o = ours.get(name)
        if not o:
            continue
        cands = [Decimal(o["batch_cost"]), Decimal(o["sequential_cost"])]
        cells = []
        for x in (highs, cpsat):
            r = x.get(name)
            if r:
                cands.append(Decimal(r["cost"]))
                cells.append(f"{r['cost']} in {r['ms']:.0f} ms ({r['status']})")
            else:
                cells.append("n/a")
        best = min(cands)
        print(f"| {name} | {o['batch_cost']} in {o['batch_ms']:.0f} ms ({o['batch_status']}) | "
              f"{o['sequential_cost']} in {o['sequential_ms']:.0f} ms | {cells[0]} | {cells[1]} | "
              f"{best} | {pct(o['batch_cost'], best)} | {pct(o['nearest_cost'], best)} | "
              f"{pct(o['priority_cost'], best)} |")


if __name__ == "__main__":
    main(sys.argv[1])
