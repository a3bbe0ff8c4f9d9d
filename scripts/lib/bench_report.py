"""Shared by the benchmark scripts' summaries: finding a phase in etcd-benchmark's JSON, and
printing a Markdown table. The scripts run from the repository root and put scripts/lib on
sys.path before importing this."""


def by_operation(report, name):
    """The report of operation `name`: the object itself when it holds one phase, else the entry
    of its "reports" list; None when the run has no such phase."""
    if report.get("operation") == name:
        return report
    return next((r for r in report.get("reports", []) if r["operation"] == name), None)


def print_table(header, rows):
    """Prints `header` and `rows` as a Markdown table with aligned columns."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    for index, r in enumerate([header] + rows):
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")
        if index == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
