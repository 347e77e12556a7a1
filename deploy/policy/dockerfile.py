"""The Dockerfile: multi-stage, pinned bases, a numeric non-root user, no secrets and no
build tools in the image that runs, a health check on /readyz, gunicorn as the command."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from deploy.policy.findings import Finding
from deploy.policy.rules import APP_PORT, SECRET_NAME, numeric_non_root, unpinned_image

WHERE = "Dockerfile"
#: Compilers and build tools: in a builder stage, never in the image that runs.
BUILD_TOOLS = re.compile(
    r"(?<![\w.-])(gcc|g\+\+|cc|clang|make|build-essential|build-base|libc6-dev|"
    r"[a-z0-9.+]+-dev|[a-z0-9.+]+-devel)(?![\w.-])"
)


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


def parse_dockerfile(text: str) -> list[Stage]:
    """Instructions grouped by stage, continuation lines joined and comment lines
    dropped (as the builder does)."""
    instructions: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, args = (pending + stripped).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        pending = ""
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = [w for w in instruction.args.split() if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif stages:
            stages[-1].instructions.append(instruction)
    return stages


def stage_chain(stages: list[Stage], stage: Stage) -> list[Stage]:
    """The stage and those it is built FROM, nearest first: the final image carries
    what each of them installed."""
    by_name = {s.name: s for s in stages if s.name}
    chain = [stage]
    while chain[-1].base in by_name and by_name[chain[-1].base] not in chain:
        chain.append(by_name[chain[-1].base])
    return chain


def env_names(instruction: Instruction) -> list[str]:
    """The names an ENV or ARG instruction sets (``A=1 B=2``, ``A 1``, ``A``)."""
    words = shlex.split(instruction.args, posix=True)
    if instruction.keyword == "ENV" and words and "=" not in words[0]:
        return [words[0]]  # legacy form: ENV NAME value with spaces
    return [w.partition("=")[0] for w in words]


def _at(ins: Instruction) -> str:
    return f"{WHERE}:{ins.line}"


def _instruction_findings(stages: list[Stage]) -> list[Finding]:
    """What no stage may do: an unpinned base, a secret in ENV, ARG or a RUN, an ADD."""
    findings: list[Finding] = []
    names = {s.name for s in stages if s.name}
    for stage in stages:
        if stage.base not in names and (reason := unpinned_image(stage.base)):
            findings.append(
                Finding("dockerfile.pinned-base", WHERE, f"FROM {stage.base}: {reason}")
            )
        for ins in stage.instructions:
            if ins.keyword in ("ENV", "ARG"):
                findings += [
                    Finding(
                        "dockerfile.no-secret-in-image",
                        _at(ins),
                        f"{ins.keyword} {name} looks like a secret: give it at run time as a "
                        "file (NAME_FILE), never in the image",
                    )
                    for name in env_names(ins)
                    if SECRET_NAME.search(name)
                ]
            if ins.keyword == "RUN":
                # A secret-looking variable set inside a RUN (a build-only value) must be
                # generated there ($(...)), never written into the Dockerfile.
                # A throwaway SQLite URL carries no credential.
                for name, value in re.findall(r"\b([A-Za-z_]+)=(\"[^\"]*\"|\S+)", ins.args):
                    harmless = name == "DATABASE_URL" and value.startswith("sqlite:")
                    if SECRET_NAME.search(name) and "$(" not in value and not harmless:
                        findings.append(
                            Finding(
                                "dockerfile.no-secret-in-image",
                                _at(ins),
                                f"RUN sets {name} to a literal value",
                            )
                        )
            if ins.keyword == "ADD":
                findings.append(
                    Finding(
                        "dockerfile.copy-not-add",
                        _at(ins),
                        "use COPY, not ADD (no remote URLs, no tars)",
                    )
                )
    return findings


def _final_stage_findings(stages: list[Stage]) -> list[Finding]:
    """What the image that runs must be: everything its chain of stages set."""
    findings: list[Finding] = []
    inherited = [
        ins for stage in reversed(stage_chain(stages, stages[-1])) for ins in stage.instructions
    ]

    def last(keyword: str) -> Instruction | None:
        found = [ins for ins in inherited if ins.keyword == keyword]
        return found[-1] if found else None

    user = last("USER")
    if user is None or not numeric_non_root(user.args):
        findings.append(
            Finding(
                "dockerfile.non-root",
                WHERE,
                "the final stage must end with a numeric, non-root USER (e.g. 10001:10001), "
                f"not {user.args if user else 'none (root)'}",
            )
        )
    for ins in inherited:
        tool = BUILD_TOOLS.search(ins.args) if ins.keyword == "RUN" else None
        if tool:
            findings.append(
                Finding(
                    "dockerfile.no-build-tools",
                    _at(ins),
                    f"the final stage installs build tools ({tool[1]})",
                )
            )
    healthcheck = last("HEALTHCHECK")
    if healthcheck is None or "/readyz" not in healthcheck.args:
        findings.append(
            Finding(
                "dockerfile.healthcheck", WHERE, "the final stage needs a HEALTHCHECK on /readyz"
            )
        )
    env = {name for ins in inherited if ins.keyword == "ENV" for name in env_names(ins)}
    for required in ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"):
        if required not in env:
            findings.append(
                Finding("dockerfile.python-env", WHERE, f"the final stage must set ENV {required}")
            )
    expose = last("EXPOSE")
    if expose is None or str(APP_PORT) not in expose.args.split():
        findings.append(
            Finding("dockerfile.expose", WHERE, f"the final stage must EXPOSE {APP_PORT}")
        )
    cmd = last("CMD")
    if cmd is None or "gunicorn" not in cmd.args or "deploy/gunicorn.conf.py" not in cmd.args:
        findings.append(
            Finding(
                "dockerfile.gunicorn",
                WHERE,
                "the final stage's CMD must run gunicorn -c deploy/gunicorn.conf.py",
            )
        )
    return findings


def dockerfile_findings(text: str) -> list[Finding]:
    """The Dockerfile's text, checked."""
    stages = parse_dockerfile(text)
    if len(stages) < 2:
        return [
            Finding(
                "dockerfile.multi-stage",
                WHERE,
                "the Dockerfile must be multi-stage (a builder, then the runtime)",
            )
        ]
    return _instruction_findings(stages) + _final_stage_findings(stages)
