#!/usr/bin/python3
"""Parses a Prometheus text exposition on stdin with prometheus_client's parser (Debian's
python3-prometheus-client) and prints one line per sample, sorted:

    TYPE <family> <type>
    SAMPLE <name>{<label>=<value>,...} <value>

Exits 1, naming the problem, when the text does not parse or a family has no HELP."""
import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    text = sys.stdin.read()
    lines = []
    try:
        for family in text_string_to_metric_families(text):
            if not family.documentation:
                print(f"family {family.name} has no HELP", file=sys.stderr)
                return 1
            lines.append(f"TYPE {family.name} {family.type}")
            for s in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                lines.append(f"SAMPLE {s.name}{{{labels}}} {s.value!r}")
    except Exception as e:  # the parser raises ValueError and friends on malformed text
        print(f"unparseable exposition: {e}", file=sys.stderr)
        return 1
    print("\n".join(sorted(lines)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
