"""Fill ``expect`` of every peer fixture from the peer's own code, and ``ours`` (from our code) of those with a
``why`` (make peer-goldens). Inputs and ``why`` are left as written; run it after adding a fixture, then read the
diff."""

from __future__ import annotations

import yaml

from tests.peers.peerwebhooks import fixtures, load, ours, running_peers


def main() -> None:
    with running_peers() as ask:
        for path in fixtures():
            case = load(path)
            case["expect"] = ask(case)
            if "why" in case:
                case["ours"] = ours(case)
            else:
                case.pop("ours", None)
            head = "".join(line for line in path.read_text().splitlines(keepends=True) if line.startswith("#"))
            body = yaml.safe_dump(case, sort_keys=False, width=120, default_flow_style=None)
            path.write_text(head + body)
            print(f"{path.parent.name}/{path.name}: {next(iter(case['expect']))}")


if __name__ == "__main__":
    main()
