"""Fuzz the sandbox against HubSpot's published OpenAPI documents for companies and properties.

Not part of `make test`: HubSpot's documents stay out of this repository. With a local copy of
https://github.com/HubSpot/HubSpot-public-api-spec-collection:

    .venv/bin/python -m hubspot_sandbox.fuzz /path/to/HubSpot-public-api-spec-collection \\
        [--versions v3,2026-03,2026-09] [--max-examples 30] [--seed 1]

One in-process sandbox (rate limits off, a few seeded companies whose id
every `{companyId}`/`{objectId}` takes, so requests reach the records and not only 404s) serves every run.
Schemathesis generates requests from the document (examples, coverage and fuzzing phases) and checks that no
answer is a 5xx and that every answer's status, content type and body conform to the document. HubSpot's
documents have quirks that HubSpot's own answers do not follow; KNOWN_QUIRKS relaxes exactly those, each with
its reason, on an in-memory copy. Exit status: 0 when every document passed.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubspot_sandbox.server import SandboxServer

TOKEN = "pat-fuzz"
DOCUMENTS = {
    "companies": "PublicApiSpecs/CRM/Companies/Rollouts/424/{version}/companies.json",
    "properties": "PublicApiSpecs/CRM/Properties/Rollouts/145899/{version}/properties.json",
}
VERSIONS = ("v3", "2026-03", "2026-09")
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


@dataclass(frozen=True)
class Quirk:
    """A place where HubSpot's document and HubSpot's own answers disagree; the sandbox answers as HubSpot does."""

    reason: str
    relax: Callable[[dict[str, Any]], None]


def _optional(schema_name: str, *fields: str) -> Callable[[dict[str, Any]], None]:
    def relax(document: dict[str, Any]) -> None:
        schema = document.get("components", {}).get("schemas", {}).get(schema_name)
        if schema and "required" in schema:
            schema["required"] = [name for name in schema["required"] if name not in fields]
    return relax


KNOWN_QUIRKS = (
    Quirk("StandardError requires `errors` and `links`, but HubSpot's batch errors carry neither (the batch read's "
          "OBJECT_NOT_FOUND captures in hubspot-api.md section 1.6)", _optional("StandardError", "errors", "links")),
)


def _relaxed(document: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(document)
    for quirk in KNOWN_QUIRKS:
        quirk.relax(out)
    return out


def _config(path: Path, company_id: str) -> None:
    path.write_text(
        f'headers = {{ Authorization = "Bearer {TOKEN}" }}\n'
        "[parameters]\n"
        '"path.objectType" = "companies"\n'
        f'"path.companyId" = "{company_id}"\n'
        f'"path.objectId" = "{company_id}"\n'
    )


def _seed(server: SandboxServer) -> str:
    """A few companies (the fuzzer archives and edits them freely); returns the id the path parameters take."""
    import httpx

    with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as api:
        ids = [api.post("/crm/v3/objects/companies", json={"properties": {"name": f"Fuzz {n}", "domain":
                                                                          f"fuzz{n}.example"}}).json()["id"]
               for n in range(5)]
    return ids[0]


def _commit(specs: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(specs), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("specs", type=Path, help="a checkout of HubSpot/HubSpot-public-api-spec-collection")
    parser.add_argument("--versions", default=",".join(VERSIONS), help="comma-separated: v3, 2026-03, 2026-09")
    parser.add_argument("--max-examples", type=int, default=30, help="generated cases per operation and phase")
    parser.add_argument("--seed", type=int, default=1, help="the generator's seed (a run is repeatable)")
    args = parser.parse_args(argv)
    schemathesis = Path(sys.executable).with_name("schemathesis")
    print(f"HubSpot documents at commit {_commit(args.specs)}")
    for quirk in KNOWN_QUIRKS:
        print(f"relaxed: {quirk.reason}")
    results: list[tuple[str, str, int]] = []
    server = SandboxServer(access_token=TOKEN, client_secret="fuzz-secret", rate_limit_per_10s=None,
                           search_per_second=None)
    with server, tempfile.TemporaryDirectory() as scratch:
        company_id = _seed(server)
        config = Path(scratch) / "schemathesis.toml"
        _config(config, company_id)
        for version in args.versions.split(","):
            for api, template in DOCUMENTS.items():
                source = args.specs / template.format(version=version)
                document = Path(scratch) / f"{api}-{version}.json"
                document.write_text(json.dumps(_relaxed(json.loads(source.read_text()))))
                print(f"\n=== {api} {version}: {source.relative_to(args.specs)}", flush=True)
                code = subprocess.run([
                    str(schemathesis), "--config-file", str(config), "run", str(document), "--url", server.base_url,
                    "--checks", CHECKS, "--phases", "examples,coverage,fuzzing",
                    "--max-examples", str(args.max_examples), "--workers", "1", "--seed", str(args.seed),
                ], check=False, cwd=scratch).returncode  # its cache stays out of the checkout
                results.append((api, version, code))
    print("\n=== summary")
    for api, version, code in results:
        print(f"{api:<11} {version:<8} {'passed' if code == 0 else f'FAILED (exit {code})'}")
    return 0 if all(code == 0 for _, _, code in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
