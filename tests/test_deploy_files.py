"""The deployment files keep their security rules: the Dockerfile, .dockerignore,
deploy/compose.yaml, every manifest under deploy/k8s/ and the access logs of
deploy/nginx/flashq.conf.

Each rule is a function that returns the problems it finds (empty: fine). The shipped
files must have none; and each rule is also run on a copy broken on purpose (in memory,
never on disk), which must be caught, so that no check here can pass vacuously. The
Kubernetes manifests are validated against the API schemas that kubernetes-validate
ships, in strict mode (an unknown field is an error): that test is skipped, saying why,
where kubernetes-validate is not installed (it is in requirements-dev.txt). No Docker
daemon and no cluster is needed."""

from __future__ import annotations

import copy
import re
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "deploy" / "compose.yaml"
K8S_DIR = ROOT / "deploy" / "k8s"
NGINX_CONF = ROOT / "deploy" / "nginx" / "flashq.conf"

#: The oldest Kubernetes release the manifests claim to support, and the newest that
#: kubernetes-validate has schemas for: both must accept every document.
K8S_VERSIONS = ("1.30.0", "1.37.0")
NAMESPACE = "flashq"
APP_PORT = 8000
#: The scheduler's counters (SCHEDULER_METRICS_PORT), for Prometheus only.
SCHEDULER_METRICS_PORT = 9100
#: The one writable directory of a read-only container: a tmpfs (compose) or an
#: emptyDir (Kubernetes), never the image's own.
TMP = "/tmp"  # noqa: S108
#: The only namespaces that may reach the app (10-networkpolicies.yaml).
ALLOWED_SOURCES = {
    ("kubernetes.io/metadata.name", "ingress-nginx"),
    ("flashq.io/workers", "true"),
    ("kubernetes.io/metadata.name", "monitoring"),
}
#: The only destinations flashQ's pods may open connections to: PostgreSQL and DNS.
ALLOWED_EGRESS_PORTS = {("TCP", 5432), ("UDP", 53), ("TCP", 53)}

#: A variable named like this holds a secret: it may never be set in an image (ENV,
#: ARG) nor given as a value, only as NAME_FILE pointing at a mounted file.
SECRET_NAME = re.compile(
    r"SECRET|PASSWORD|PASSWD|TOKEN|PEPPER|KEY|CREDENTIAL|DATABASE_URL", re.IGNORECASE
)
#: An exact release in an image tag (3.11.17-slim-bookworm, 1.30.4-alpine3.24): major,
#: minor and patch. Not `latest`, and not `3.11-slim`, which moves with every patch.
EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+([-_+.]|$)")
#: Images whose releases have two parts (PostgreSQL 10 and later: 15.19 is exact).
TWO_PART_RELEASES = {"postgres": re.compile(r"^\d+\.\d+([-_+.]|$)")}
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
#: Compilers and build tools: in a builder stage, never in the image that runs.
BUILD_TOOLS = re.compile(
    r"(?<![\w.-])(gcc|g\+\+|cc|clang|make|build-essential|build-base|libc6-dev|"
    r"[a-z0-9.+]+-dev|[a-z0-9.+]+-devel)(?![\w.-])"
)


# -- shared helpers ---------------------------------------------------------------------


def image_problems(image: str, where: str) -> list[str]:
    """An image reference must name an exact release (or a digest), never `latest`."""
    if DIGEST.search(image):
        return []
    name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
    if not tag:
        return [f"{where}: image {image!r} has no tag (means latest)"]
    exact = TWO_PART_RELEASES.get(name.split("/")[-1], EXACT_VERSION)
    if tag == "latest" or not exact.search(tag):
        return [f"{where}: image {image!r} is not pinned to an exact version or digest"]
    return []


def numeric_non_root(user: str) -> bool:
    """``10001`` or ``10001:10001``: numeric (so a runtime can tell it is not root
    without reading /etc/passwd) and neither part 0."""
    parts = str(user).split(":")
    return len(parts) <= 2 and all(p.isdigit() and int(p) != 0 for p in parts)


# -- Dockerfile ---------------------------------------------------------------------------


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


def dockerfile_problems(text: str) -> list[str]:
    stages = parse_dockerfile(text)
    if len(stages) < 2:
        return ["the Dockerfile must be multi-stage (a builder, then the runtime)"]
    problems: list[str] = []
    names = {s.name for s in stages if s.name}
    for stage in stages:
        if stage.base not in names:
            problems += image_problems(stage.base, f"FROM {stage.base}")
        for ins in stage.instructions:
            if ins.keyword in ("ENV", "ARG"):
                problems += [
                    f"line {ins.line}: {ins.keyword} {name} looks like a secret: give it at "
                    "run time as a file (NAME_FILE), never in the image"
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
                        problems.append(f"line {ins.line}: RUN sets {name} to a literal value")
            if ins.keyword == "ADD":
                problems.append(f"line {ins.line}: use COPY, not ADD (no remote URLs, no tars)")
    final = stages[-1]
    chain = stage_chain(stages, final)
    inherited = [ins for stage in reversed(chain) for ins in stage.instructions]

    def last(keyword: str) -> Instruction | None:
        found = [ins for ins in inherited if ins.keyword == keyword]
        return found[-1] if found else None

    user = last("USER")
    if user is None or not numeric_non_root(user.args):
        problems.append(
            "the final stage must end with a numeric, non-root USER (e.g. 10001:10001), "
            f"not {user.args if user else 'none (root)'}"
        )
    for ins in inherited:
        tool = BUILD_TOOLS.search(ins.args) if ins.keyword == "RUN" else None
        if tool:
            problems.append(f"line {ins.line}: the final stage installs build tools ({tool[1]})")
    healthcheck = last("HEALTHCHECK")
    if healthcheck is None or "/readyz" not in healthcheck.args:
        problems.append("the final stage needs a HEALTHCHECK on /readyz")
    env = {name for ins in inherited if ins.keyword == "ENV" for name in env_names(ins)}
    for required in ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"):
        if required not in env:
            problems.append(f"the final stage must set ENV {required}")
    expose = last("EXPOSE")
    if expose is None or str(APP_PORT) not in expose.args.split():
        problems.append(f"the final stage must EXPOSE {APP_PORT}")
    cmd = last("CMD")
    if cmd is None or "gunicorn" not in cmd.args or "deploy/gunicorn.conf.py" not in cmd.args:
        problems.append("the final stage's CMD must run gunicorn -c deploy/gunicorn.conf.py")
    return problems


def test_the_dockerfile_keeps_its_rules() -> None:
    assert dockerfile_problems(DOCKERFILE.read_text()) == []


def _replace(old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert old in text, f"the Dockerfile changed: {old!r} is gone; update this test"
        return text.replace(old, new, 1)

    return edit


_RUNTIME_FROM = "FROM base AS runtime\n"
BROKEN_DOCKERFILES: dict[str, tuple[Callable[[str], str], str]] = {
    "latest base": (
        _replace("FROM python:3.11.17-slim-bookworm AS", "FROM python:latest AS"),
        "not pinned",
    ),
    "minor-version base": (
        _replace("FROM python:3.11.17-slim-bookworm AS", "FROM python:3.11-slim-bookworm AS"),
        "not pinned",
    ),
    "floating base": (
        _replace("FROM python:3.11.17-slim-bookworm AS", "FROM python:3-slim AS"),
        "not pinned",
    ),
    "untagged base": (_replace("FROM nginx:1.30.4-alpine3.24", "FROM nginx"), "no tag"),
    "root user": (_replace("USER 10001:10001", "USER root"), "non-root USER"),
    "uid 0": (_replace("USER 10001:10001", "USER 0"), "non-root USER"),
    "user name": (_replace("USER 10001:10001", "USER flashq"), "non-root USER"),
    "no user": (_replace("USER 10001:10001\n", ""), "non-root USER"),
    "secret in ENV": (
        _replace(_RUNTIME_FROM, _RUNTIME_FROM + "ENV SECRET_KEY=abc\n"),
        "ENV SECRET_KEY",
    ),
    "pepper in ARG": (
        _replace(_RUNTIME_FROM, _RUNTIME_FROM + "ARG TOKEN_PEPPER\n"),
        "ARG TOKEN_PEPPER",
    ),
    "key in builder ENV": (
        _replace("ENV PIP_DISABLE", "ENV ENCRYPTION_KEYS=k1:abc PIP_DISABLE"),
        "ENV ENCRYPTION_KEYS",
    ),
    "literal build secret": (
        _replace('SECRET_KEY="$(python', 'SECRET_KEY="hunter2" X="$(python'),
        "RUN sets SECRET_KEY",
    ),
    "gcc at runtime": (
        _replace(_RUNTIME_FROM, _RUNTIME_FROM + "RUN apt-get install -y gcc\n"),
        "build tools",
    ),
    "build-essential at runtime": (
        _replace(_RUNTIME_FROM, _RUNTIME_FROM + "RUN apt-get install -y build-essential\n"),
        "build tools",
    ),
    "runtime built on the builder": (
        _replace(_RUNTIME_FROM, "FROM builder AS runtime\n"),
        "build tools",
    ),
    "no healthcheck": (_replace("HEALTHCHECK", "# HEALTHCHECK"), "HEALTHCHECK on /readyz"),
    "healthcheck elsewhere": (_replace("/readyz'", "/healthz'"), "HEALTHCHECK on /readyz"),
    "bytecode written": (
        _replace("PYTHONDONTWRITEBYTECODE=1", "PYTHONFOO=1"),
        "PYTHONDONTWRITEBYTECODE",
    ),
    "no expose": (_replace("EXPOSE 8000", "EXPOSE 9000"), "EXPOSE 8000"),
    "runserver": (
        _replace('CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py"]', 'CMD ["python"]'),
        "gunicorn",
    ),
    "single stage": (lambda text: "FROM python:3.11.17-slim-bookworm\nUSER 10001\n", "multi"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_DOCKERFILES))
def test_a_broken_dockerfile_is_caught(case: str) -> None:
    edit, expected = BROKEN_DOCKERFILES[case]
    problems = dockerfile_problems(edit(DOCKERFILE.read_text()))
    assert any(expected in problem for problem in problems), problems


# -- .dockerignore ------------------------------------------------------------------------


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regular expression over slash-separated paths (Go's
    filepath.Match plus ``**``, as Docker reads it)."""
    pattern = pattern.strip("/")
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignore_excludes(text: str) -> Callable[[str], bool]:
    """Whether a path of the build context is left out: the last pattern that matches
    it or one of its parent directories decides; ``!`` puts it back."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            rules.append((negated, _ignore_regex(line.lstrip("!"))))

    def excluded(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        result = False
        for negated, regex in rules:
            if any(regex.fullmatch(prefix) for prefix in prefixes):
                result = not negated
        return result

    return excluded


#: Never in the build context: local state, secrets, caches, version control, tests.
MUST_EXCLUDE = [
    ".git/HEAD",
    ".venv/bin/python",
    ".flashq-dev/secrets.json",
    ".flashq-dev/test.sqlite3",
    "db.sqlite3",
    "db.sqlite3-wal",
    "bench/results/run.json",
    ".pytest_cache/v/cache/nodeids",
    ".mypy_cache/3.11/x.json",
    ".ruff_cache/content",
    ".hypothesis/examples/x",
    "queues/__pycache__/models.cpython-311.pyc",
    "security/__pycache__/x.pyc",
    "staticfiles/admin/css/base.css",
    "tests/test_deploy_files.py",
    "deploy/secrets/secret_key",
    "flashq_project/.env",
    "deploy/tls/privkey.pem",
    "somewhere/server.key",
    # Files nobody listed: the allow-list keeps them out too.
    "backup.sql",
    "notes/private.txt",
]


def _context_must_include() -> list[str]:
    """What the image runs: manage.py, the pinned requirements, gunicorn's settings,
    templates, and every Python file of each of the project's own installed apps."""
    paths = ["manage.py", "requirements.txt", "deploy/gunicorn.conf.py"]
    paths += [str(p.relative_to(ROOT)) for p in (ROOT / "templates").rglob("*.html")]
    packages = {app.split(".")[0] for app in settings.INSTALLED_APPS}
    for package in sorted(packages):
        if (ROOT / package / "__init__.py").exists():
            paths += [
                str(p.relative_to(ROOT))
                for p in (ROOT / package).rglob("*.py")
                if "__pycache__" not in p.parts
            ]
    return paths


def dockerignore_problems(text: str) -> list[str]:
    excluded = dockerignore_excludes(text)
    problems = [
        f"{path} would be sent to the builder" for path in MUST_EXCLUDE if not excluded(path)
    ]
    problems += [
        f"{path} would be missing from the image"
        for path in _context_must_include()
        if excluded(path)
    ]
    return problems


def test_the_dockerignore_keeps_local_state_out_and_the_app_in() -> None:
    assert dockerignore_problems(DOCKERIGNORE.read_text()) == []


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda t: t.replace("\n*\n", "\n", 1), "backup.sql would be sent"),
        (lambda t: t + "!.flashq-dev\n", ".flashq-dev/secrets.json would be sent"),
        (
            lambda t: t.replace("**/__pycache__\n", "").replace("**/*.py[cod]\n", ""),
            "__pycache__/models.cpython-311.pyc would",
        ),
        (lambda t: t.replace("!queues/\n", ""), "queues/models.py would be missing"),
        (lambda t: t + "templates\n", "templates/admin/flashq_index.html would be missing"),
    ],
    ids=["no catch-all", "dev secrets back in", "bytecode", "an app left out", "templates out"],
)
def test_a_broken_dockerignore_is_caught(edit: Callable[[str], str], expected: str) -> None:
    problems = dockerignore_problems(edit(DOCKERIGNORE.read_text()))
    assert any(expected in problem for problem in problems), problems


# -- deploy/compose.yaml ------------------------------------------------------------------

#: The services that run the flashQ image (hardened alike).
COMPOSE_APP_SERVICES = ("app", "scheduler", "migrate")
#: The database URL of the tables' owner, who can switch the audit triggers off: only
#: the migration may have it; the app and the scheduler run as the runtime role, which
#: owns nothing (README.md, Production).
OWNER_URL = "database_url_owner"


def _command(value: Any) -> str:
    return " ".join(value) if isinstance(value, list) else str(value or "")


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): str(v) for k, v in env.items()}


def compose_problems(doc: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    services: dict[str, dict[str, Any]] = doc.get("services") or {}
    top_secrets: dict[str, Any] = doc.get("secrets") or {}
    for name in (*COMPOSE_APP_SERVICES, "postgres", "nginx"):
        if name not in services:
            problems.append(f"service {name} is missing")
    # Secrets are files, mounted by compose under /run/secrets.
    for name, spec in top_secrets.items():
        if not isinstance(spec, dict) or set(spec) != {"file"}:
            problems.append(f"secret {name} must come from a file, and only from one")
    for name, service in services.items():
        if "build" not in service:
            problems += image_problems(str(service.get("image", "")), f"service {name}")
        listed = {s if isinstance(s, str) else s.get("source") for s in service.get("secrets", [])}
        for secret in listed - set(top_secrets):
            problems.append(f"service {name} uses secret {secret}, which is not defined")
        for var, value in _environment(service).items():
            if re.search(r"://[^/@\s]*:[^/@\s]+@", value):
                problems.append(f"service {name}: {var} holds a password inline")
            if not SECRET_NAME.search(var):
                continue
            secret = value.removeprefix("/run/secrets/")
            if not var.endswith("_FILE") or not value.startswith("/run/secrets/"):
                problems.append(f"service {name}: {var} is a secret value, not a /run/secrets file")
            elif secret not in listed:
                problems.append(f"service {name}: {var} points at {secret}, not mounted")
        if "env_file" in service:
            problems.append(f"service {name}: no env_file (secrets belong in files)")
    for name in COMPOSE_APP_SERVICES:
        service = services.get(name, {})
        if service.get("read_only") is not True:
            problems.append(f"service {name} must have read_only: true")
        tmpfs = service.get("tmpfs") or []
        tmpfs = [tmpfs] if isinstance(tmpfs, str) else tmpfs
        volumes = service.get("volumes") or []
        if not any(str(t).split(":")[0] == TMP for t in tmpfs) and not any(
            isinstance(v, dict) and v.get("type") == "tmpfs" and v.get("target") == TMP
            for v in volumes
        ):
            problems.append(f"service {name} needs a tmpfs at /tmp")
        if not numeric_non_root(str(service.get("user", ""))):
            problems.append(f"service {name} must run as a numeric non-root user")
        if "ALL" not in (service.get("cap_drop") or []):
            problems.append(f"service {name} must drop every capability")
        if not any("no-new-privileges" in str(o) for o in service.get("security_opt") or []):
            problems.append(f"service {name} must set no-new-privileges")
        if (
            _environment(service).get("DJANGO_SETTINGS_MODULE")
            != "flashq_project.settings.production"
        ):
            problems.append(f"service {name} must run with production settings")
    if "qcluster" not in _command(services.get("scheduler", {}).get("command")):
        problems.append("the scheduler must run manage.py qcluster")
    if "migrate --noinput" not in _command(services.get("migrate", {}).get("command")):
        problems.append("the migrate service must run manage.py migrate --noinput")
    problems += compose_database_role_problems(services)
    depends = services.get("app", {}).get("depends_on") or {}
    if (
        not isinstance(depends, dict)
        or (depends.get("migrate") or {}).get("condition") != "service_completed_successfully"
    ):
        problems.append("the app must wait for the migration to complete successfully")
    nginx = services.get("nginx", {})
    mounts = [str(v) for v in nginx.get("volumes") or []]
    if not any(
        m.split(":")[:2] == ["./nginx/flashq.conf", "/etc/nginx/conf.d/flashq.conf"] for m in mounts
    ):
        problems.append(
            "nginx must mount deploy/nginx/flashq.conf at /etc/nginx/conf.d/flashq.conf"
        )
    if not any(m.endswith(":ro") and "tls" in m for m in mounts):
        problems.append("nginx must mount the TLS directory read-only")
    return problems


def compose_database_role_problems(services: dict[str, dict[str, Any]]) -> list[str]:
    """The owner's URL reaches the migration only, which also grants the runtime role."""
    problems: list[str] = []
    for name in ("app", "scheduler"):
        service = services.get(name, {})
        listed = {s if isinstance(s, str) else s.get("source") for s in service.get("secrets", [])}
        if OWNER_URL in listed or any(OWNER_URL in v for v in _environment(service).values()):
            problems.append(
                f"service {name} gets the owner's database URL ({OWNER_URL}): the app and the "
                "scheduler must run as the runtime role"
            )
    migrate = services.get("migrate", {})
    if _environment(migrate).get("DATABASE_URL_FILE") != f"/run/secrets/{OWNER_URL}":
        problems.append(f"the migrate service must connect as the tables' owner ({OWNER_URL})")
    command = _command(migrate.get("command"))
    if "manage.py grant_runtime_role" not in command.partition("migrate --noinput")[2]:
        problems.append("the migrate service must run manage.py grant_runtime_role after migrate")
    return problems


def _compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


def test_compose_keeps_its_rules() -> None:
    assert compose_problems(_compose()) == []


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set (or, with value None, delete) a nested key: "services.app.read_only"."""

    def edit(doc: dict[str, Any]) -> None:
        *parents, key = path.split(".")
        node = doc
        for part in parents:
            node = node[part]
        if value is None:
            del node[key]
        else:
            node[key] = value

    return edit


def _owner_url_for(name: str) -> Callable[[dict[str, Any]], None]:
    """``name`` mounts the owner's URL and reads it (its own environment: the services
    share the anchored one)."""

    def edit(doc: dict[str, Any]) -> None:
        service = doc["services"][name]
        service["secrets"] = [*service["secrets"], OWNER_URL]
        service["environment"] = {
            **service["environment"],
            "DATABASE_URL_FILE": f"/run/secrets/{OWNER_URL}",
        }

    return edit


BROKEN_COMPOSE: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "writable app": (_set("services.app.read_only", False), "app must have read_only"),
    "no tmp": (_set("services.scheduler.tmpfs", None), "scheduler needs a tmpfs"),
    "root user": (_set("services.app.user", "0:0"), "numeric non-root"),
    "capabilities kept": (_set("services.migrate.cap_drop", []), "drop every capability"),
    "inline secret": (
        _set("services.app.environment.SECRET_KEY", "x" * 50),
        "SECRET_KEY is a secret value",
    ),
    "inline database password": (
        _set("services.app.environment.DATABASE_URL", "postgres://u:pw@postgres/flashq"),
        "holds a password inline",
    ),
    "secret from the environment": (
        _set("secrets.secret_key", {"environment": "SECRET_KEY"}),
        "must come from a file",
    ),
    "unmounted secret file": (
        _set("services.app.secrets", ["secret_key"]),
        "points at token_pepper, not mounted",
    ),
    "latest postgres": (_set("services.postgres.image", "postgres:latest"), "not pinned"),
    "floating postgres": (_set("services.postgres.image", "postgres:15"), "not pinned"),
    "no migration gate": (_set("services.app.depends_on.migrate", None), "wait for the migration"),
    "scheduler without qcluster": (
        _set("services.scheduler.command", ["python", "manage.py", "runserver"]),
        "qcluster",
    ),
    "local settings": (
        _set("services.app.environment.DJANGO_SETTINGS_MODULE", "flashq_project.settings.local"),
        "production settings",
    ),
    "nginx without the shipped conf": (_set("services.nginx.volumes", []), "flashq.conf"),
    "the app as the owner": (_owner_url_for("app"), "service app gets the owner's database URL"),
    "the owner's URL mounted in the scheduler": (
        lambda doc: doc["services"]["scheduler"].update(
            secrets=[*doc["services"]["scheduler"]["secrets"], OWNER_URL]
        ),
        "service scheduler gets the owner's database URL",
    ),
    "the migration as the runtime role": (
        _set("services.migrate.environment.DATABASE_URL_FILE", "/run/secrets/database_url"),
        "must connect as the tables' owner",
    ),
    "no grants for the runtime role": (
        _set("services.migrate.command", ["python", "manage.py", "migrate", "--noinput"]),
        "must run manage.py grant_runtime_role",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_COMPOSE))
def test_a_broken_compose_file_is_caught(case: str) -> None:
    edit, expected = BROKEN_COMPOSE[case]
    doc = _compose()
    edit(doc)
    problems = compose_problems(doc)
    assert any(expected in problem for problem in problems), problems


# -- deploy/k8s ---------------------------------------------------------------------------


def k8s_documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                assert isinstance(doc, dict), f"{path.name}: a document is not a mapping"
                docs.append({**doc, "__file__": path.name})
    return docs


def _strip(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "__file__"}


def _where(doc: dict[str, Any]) -> str:
    return f"{doc['__file__']}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def _pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    if doc.get("kind") in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        spec: dict[str, Any] = doc["spec"]["template"]["spec"]
        return spec
    if doc.get("kind") == "Pod":
        spec = doc["spec"]
        return spec
    return None


def _containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from spec.get("initContainers") or []
    yield from spec.get("containers") or []


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if selector.get("matchExpressions"):
        raise AssertionError("matchExpressions: teach this test to read them")
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def _effective(container_sc: dict[str, Any], pod_sc: dict[str, Any]) -> Callable[[str], Any]:
    """A security setting as the container gets it: its own, else its pod's."""
    return lambda key: container_sc.get(key, pod_sc.get(key))


def pod_problems(doc: dict[str, Any]) -> list[str]:
    """Every container of every workload: non-root, read-only root filesystem, no
    privilege escalation, no capabilities, RuntimeDefault seccomp, requests and limits, a
    pinned image, an emptyDir /tmp, secrets as files."""
    spec = _pod_spec(doc)
    if spec is None:
        return []
    where = _where(doc)
    problems: list[str] = []
    pod_sc = spec.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            problems.append(f"{where}: {flag}")
    if spec.get("automountServiceAccountToken") is not False:
        problems.append(f"{where}: automountServiceAccountToken must be false")
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    for c in _containers(spec):
        at = f"{where} container {c['name']}"
        sc = c.get("securityContext") or {}
        setting = _effective(sc, pod_sc)
        if setting("runAsNonRoot") is not True:
            problems.append(f"{at}: runAsNonRoot must be true")
        if setting("runAsUser") in (None, 0):
            problems.append(f"{at}: runAsUser must be set, and not 0")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{at}: readOnlyRootFilesystem must be true")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{at}: allowPrivilegeEscalation must be false")
        if sc.get("privileged"):
            problems.append(f"{at}: privileged")
        capabilities = sc.get("capabilities") or {}
        if capabilities.get("drop") != ["ALL"] or capabilities.get("add"):
            problems.append(f"{at}: capabilities must drop ALL and add none")
        if (setting("seccompProfile") or {}).get("type") != "RuntimeDefault":
            problems.append(f"{at}: seccompProfile must be RuntimeDefault")
        resources = c.get("resources") or {}
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in (resources.get(kind) or {}):
                    problems.append(f"{at}: resources.{kind}.{resource} is not set")
        problems += image_problems(str(c.get("image", "")), at)
        mounts = {m["mountPath"]: m for m in c.get("volumeMounts") or []}
        tmp = mounts.get(TMP)
        if tmp is None or "emptyDir" not in volumes.get(tmp["name"], {}):
            problems.append(f"{at}: /tmp must be an emptyDir (the root filesystem is read-only)")
        secret_dirs = [
            path
            for path, m in mounts.items()
            if "secret" in volumes.get(m["name"], {}) and m.get("readOnly") is True
        ]
        for env in c.get("env") or []:
            name = env["name"]
            if "secretKeyRef" in (env.get("valueFrom") or {}):
                problems.append(f"{at}: {name} comes from a Secret as a variable, not a file")
            if SECRET_NAME.search(name) and not (
                name.endswith("_FILE")
                and any(str(env.get("value", "")).startswith(d + "/") for d in secret_dirs)
            ):
                problems.append(f"{at}: {name} must be NAME_FILE naming a read-only Secret file")
        for source in c.get("envFrom") or []:
            if "secretRef" in source:
                problems.append(f"{at}: envFrom a Secret puts secrets in the environment")
    return problems


def _http_probe(container: dict[str, Any], kind: str) -> str | None:
    probe = container.get(kind) or {}
    path = (probe.get("httpGet") or {}).get("path")
    return str(path) if path is not None else None


def workload_problems(docs: list[dict[str, Any]]) -> list[str]:
    problems: list[str] = []
    for doc in docs:
        if doc.get("kind") != "Namespace" and doc.get("metadata", {}).get("namespace") != NAMESPACE:
            problems.append(f"{_where(doc)}: not in namespace {NAMESPACE}")
        problems += pod_problems(doc)
        if doc.get("kind") == "ConfigMap":
            problems += [
                f"{_where(doc)}: {key} looks like a secret; secrets go in the Secret"
                for key in doc.get("data") or {}
                if SECRET_NAME.search(key)
            ]
        if doc.get("kind") == "Secret":
            name = doc["metadata"]["name"]
            if not name.endswith("-example"):
                problems.append(f"{_where(doc)}: only an example Secret may be committed")
            for key, value in (doc.get("stringData") or {}).items():
                if value != "PLACEHOLDER":
                    problems.append(f"{_where(doc)}: {key} is not a PLACEHOLDER")
            if doc.get("data"):
                problems.append(f"{_where(doc)}: base64 data in a committed Secret")
    deployments = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "Deployment"}
    app = deployments.get("flashq-app")
    if app is None:
        problems.append("no Deployment flashq-app")
    else:
        serving = [
            c
            for c in app["spec"]["template"]["spec"]["containers"]
            if any(p.get("containerPort") == APP_PORT for p in c.get("ports") or [])
        ]
        if not serving:
            problems.append(f"flashq-app: no container serves port {APP_PORT}")
        for c in serving:
            if _http_probe(c, "livenessProbe") != "/healthz":
                problems.append(f"flashq-app {c['name']}: livenessProbe must GET /healthz")
            if _http_probe(c, "readinessProbe") != "/readyz":
                problems.append(f"flashq-app {c['name']}: readinessProbe must GET /readyz")
        labels = app["spec"]["template"]["metadata"]["labels"]
        if not any(
            d.get("kind") == "Service" and _selects({"matchLabels": d["spec"]["selector"]}, labels)
            for d in docs
        ):
            problems.append("no Service selects the app's pods")
    scheduler = deployments.get("flashq-scheduler")
    commands = (
        [_command(c.get("command")) for c in _containers(scheduler["spec"]["template"]["spec"])]
        if scheduler
        else []
    )
    if not any("manage.py qcluster" in command for command in commands):
        problems.append("no Deployment flashq-scheduler running manage.py qcluster")
    jobs = [d for d in docs if d.get("kind") == "Job"]
    if not any(
        "manage.py migrate --noinput" in _command(c.get("command"))
        for job in jobs
        for c in _containers(job["spec"]["template"]["spec"])
    ):
        problems.append("no Job running manage.py migrate --noinput")
    return problems


def _pod_labels(docs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {
        _where(d): d["spec"]["template"]["metadata"]["labels"]
        for d in docs
        if d.get("kind") in ("Deployment", "Job")
    }


def network_problems(docs: list[dict[str, Any]]) -> list[str]:
    """A default deny; into flashQ only the app, on its port, from the named namespaces;
    out only to PostgreSQL (5432) and DNS (53)."""
    problems: list[str] = []
    policies = [d for d in docs if d.get("kind") == "NetworkPolicy"]
    pods = _pod_labels(docs)
    if not any(
        p["spec"].get("podSelector") == {}
        and set(p["spec"].get("policyTypes") or []) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
        for p in policies
    ):
        problems.append("no default-deny NetworkPolicy (podSelector {}, Ingress and Egress)")
    sources: set[tuple[str, str]] = set()
    for policy in policies:
        spec, where = policy["spec"], _where(policy)
        selected = [w for w, labels in pods.items() if _selects(spec["podSelector"], labels)]
        components = {pods[w].get("app.kubernetes.io/component") for w in selected}
        if spec.get("ingress") and components == {"scheduler"}:
            # The scheduler's counters: from monitoring, on its metrics port, only.
            for rule in spec["ingress"]:
                peers = [
                    p.get("namespaceSelector", {}).get("matchLabels")
                    for p in rule.get("from") or []
                ]
                ports = {(p.get("protocol", "TCP"), p.get("port")) for p in rule.get("ports") or []}
                if peers != [{"kubernetes.io/metadata.name": "monitoring"}] or ports != {
                    ("TCP", SCHEDULER_METRICS_PORT)
                }:
                    problems.append(
                        f"{where}: into the scheduler only monitoring, on {SCHEDULER_METRICS_PORT}"
                    )
            continue
        if spec.get("ingress") and any(
            pods[w].get("app.kubernetes.io/component") != "app" for w in selected
        ):
            problems.append(f"{where}: lets traffic into pods other than the app")
        for rule in spec.get("ingress") or []:
            peers = rule.get("from") or []
            if not peers:
                problems.append(f"{where}: an ingress rule without `from` admits everyone")
            for peer in peers:
                labels = (peer.get("namespaceSelector") or {}).get("matchLabels") or {}
                if set(peer) != {"namespaceSelector"} or len(labels) != 1:
                    problems.append(f"{where}: ingress only from a namespace, by one label: {peer}")
                    continue
                source = next(iter(labels.items()))
                if source not in ALLOWED_SOURCES:
                    problems.append(f"{where}: ingress from an unexpected namespace {source}")
                sources.add(source)
            ports = {(p.get("protocol", "TCP"), p.get("port")) for p in rule.get("ports") or []}
            if ports != {("TCP", APP_PORT)}:
                problems.append(f"{where}: ingress must be to TCP {APP_PORT} only, not {ports}")
        for rule in spec.get("egress") or []:
            peers = rule.get("to") or []
            ports = {(p.get("protocol", "TCP"), p.get("port")) for p in rule.get("ports") or []}
            if not peers:
                problems.append(f"{where}: an egress rule without `to` reaches everywhere")
            if not ports or not ports <= ALLOWED_EGRESS_PORTS:
                problems.append(f"{where}: egress only to 5432 and 53, not {ports or 'any port'}")
            for peer in peers:
                cidr = (peer.get("ipBlock") or {}).get("cidr", "")
                if cidr.endswith("/0"):
                    problems.append(f"{where}: egress to {cidr}")
                if ports & {("UDP", 53), ("TCP", 53)}:
                    ns = (peer.get("namespaceSelector") or {}).get("matchLabels") or {}
                    if ns.get("kubernetes.io/metadata.name") != "kube-system":
                        problems.append(f"{where}: DNS only to kube-system, not {peer}")
    if sources != ALLOWED_SOURCES:
        problems.append(f"the app should be reachable from exactly {sorted(ALLOWED_SOURCES)}")
    for workload, labels in pods.items():
        egress_ports = {
            (p.get("protocol", "TCP"), p.get("port"))
            for policy in policies
            if _selects(policy["spec"]["podSelector"], labels)
            for rule in policy["spec"].get("egress") or []
            for p in rule.get("ports") or []
        }
        if ("TCP", 5432) not in egress_ports or ("UDP", 53) not in egress_ports:
            problems.append(f"{workload}: no egress policy lets it reach PostgreSQL and DNS")
    return problems


#: The Secret holding OWNER_URL: mounted by the migration Job alone.
OWNER_SECRET = "flashq-db-owner"


def _secret_names(volume: dict[str, Any]) -> set[str]:
    names = {(volume.get("secret") or {}).get("secretName")}
    names |= {
        (source.get("secret") or {}).get("name")
        for source in (volume.get("projected") or {}).get("sources") or []
    }
    return {name for name in names if name}


def database_role_problems(docs: list[dict[str, Any]]) -> list[str]:
    """The app and the scheduler run as the runtime role: no Deployment mounts the
    owner's Secret or names its URL. The migration Job connects as the owner, in every
    container, and grants the runtime role after migrating. The example shows both."""
    problems: list[str] = []
    for doc in docs:
        spec = _pod_spec(doc)
        if spec is None:
            continue
        where = _where(doc)
        owner_volumes = {
            v["name"] for v in spec.get("volumes") or [] if OWNER_SECRET in _secret_names(v)
        }
        if doc["kind"] == "Job":
            commands = [_command(c.get("command")) for c in _containers(spec)]
            migrating = [i for i, c in enumerate(commands) if "manage.py migrate --noinput" in c]
            if migrating and not any(
                "manage.py grant_runtime_role" in c for c in commands[migrating[0] + 1 :]
            ):
                problems.append(f"{where}: no container runs grant_runtime_role after migrate")
            for c in _containers(spec):
                url: dict[str, Any] = next(
                    (e for e in c.get("env") or [] if e["name"] == "DATABASE_URL_FILE"), {}
                )
                mounts = {
                    m["mountPath"]
                    for m in c.get("volumeMounts") or []
                    if m["name"] in owner_volumes
                }
                if not any(str(url.get("value")) == f"{m}/{OWNER_URL}" for m in mounts):
                    problems.append(
                        f"{where} container {c['name']}: DATABASE_URL_FILE must be the owner's "
                        f"{OWNER_URL} from the {OWNER_SECRET} Secret"
                    )
            continue
        gets_owner = bool(owner_volumes)
        for c in _containers(spec):
            for env in c.get("env") or []:
                ref = (env.get("valueFrom") or {}).get("secretKeyRef") or {}
                gets_owner |= (
                    OWNER_URL in str(env.get("value", "")) or ref.get("name") == OWNER_SECRET
                )
            gets_owner |= any(
                (source.get("secretRef") or {}).get("name") == OWNER_SECRET
                for source in c.get("envFrom") or []
            )
        if gets_owner:
            problems.append(
                f"{where}: gets the owner's database URL ({OWNER_SECRET}): only the migration "
                "Job may; the app and the scheduler run as the runtime role"
            )
    examples = [d for d in docs if d.get("kind") == "Secret"]
    if not any(OWNER_URL in (d.get("stringData") or {}) for d in examples):
        problems.append(f"no example Secret shows {OWNER_URL}")
    if not any("database_url" in (d.get("stringData") or {}) for d in examples):
        problems.append("no example Secret shows database_url (the runtime role's)")
    return problems


def _kubernetes_validate() -> Any:
    return pytest.importorskip(
        "kubernetes_validate",
        reason="kubernetes-validate is not installed (pip install -r requirements-dev.txt)",
    )


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schemas(version: str) -> None:
    kubernetes_validate = _kubernetes_validate()
    docs = k8s_documents()
    assert docs, "no manifests under deploy/k8s"
    for doc in docs:
        try:
            kubernetes_validate.validate(_strip(doc), version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            pytest.fail(f"{_where(doc)} (Kubernetes {version}): {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            # The command line only warns about this: an unknown kind or apiVersion.
            pytest.fail(f"{_where(doc)}: {error.message}")


def test_the_validator_refuses_a_misspelt_field_and_an_unknown_kind() -> None:
    kubernetes_validate = _kubernetes_validate()
    app = next(d for d in k8s_documents() if d["metadata"]["name"] == "flashq-app")
    broken = copy.deepcopy(_strip(app))
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["readOnlyRootFilesytem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[0], strict=True)
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(
            {**_strip(app), "kind": "Deploymnet"}, K8S_VERSIONS[0], strict=True
        )


def test_the_workloads_keep_their_security_settings() -> None:
    assert workload_problems(k8s_documents()) == []


def test_the_network_policies_keep_flashq_fenced_in() -> None:
    assert network_problems(k8s_documents()) == []


def test_only_the_migration_job_gets_the_owner_s_database_url() -> None:
    assert database_role_problems(k8s_documents()) == []


def _doc(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d.get("kind") == kind and d["metadata"]["name"] == name)


def _app_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = _doc(docs, "Deployment", "flashq-app")["spec"]["template"]["spec"][
        "containers"
    ][0]
    return container


def _scheduler_init(docs: list[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = _doc(docs, "Deployment", "flashq-scheduler")["spec"]["template"][
        "spec"
    ]["initContainers"][0]
    return container


def _ingress_rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = _doc(docs, "NetworkPolicy", "flashq-app-ingress")["spec"][
        "ingress"
    ]
    return rules


def _egress_rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = _doc(docs, "NetworkPolicy", "flashq-egress")["spec"]["egress"]
    return rules


def _env(container: dict[str, Any], name: str) -> dict[str, Any]:
    entry: dict[str, Any] = next(e for e in container["env"] if e["name"] == name)
    return entry


def _drop_seccomp(docs: list[dict[str, Any]]) -> None:
    """Neither the container nor its pod names a seccomp profile."""
    _app_container(docs)["securityContext"].pop("seccompProfile")
    pod = _doc(docs, "Deployment", "flashq-app")["spec"]["template"]["spec"]
    pod["securityContext"].pop("seccompProfile")


def _job_containers(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return list(_containers(_doc(docs, "Job", "flashq-migrate")["spec"]["template"]["spec"]))


def _app_as_owner(docs: list[dict[str, Any]]) -> None:
    """The app mounts the owner's Secret and reads its URL, as the Job does."""
    pod = _doc(docs, "Deployment", "flashq-app")["spec"]["template"]["spec"]
    pod["volumes"].append({"name": "db-owner", "secret": {"secretName": OWNER_SECRET}})
    container = _app_container(docs)
    container["volumeMounts"].append(
        {"name": "db-owner", "mountPath": "/run/secrets/flashq-owner", "readOnly": True}
    )
    _env(container, "DATABASE_URL_FILE").update(value=f"/run/secrets/flashq-owner/{OWNER_URL}")


K8sEdit = Callable[[list[dict[str, Any]]], Any]
BROKEN_MANIFESTS: dict[str, tuple[K8sEdit, Callable[[list[dict[str, Any]]], list[str]], str]] = {
    "root": (
        lambda d: _app_container(d)["securityContext"].update(runAsNonRoot=False),
        workload_problems,
        "runAsNonRoot",
    ),
    "uid 0": (
        lambda d: _app_container(d)["securityContext"].update(runAsUser=0),
        workload_problems,
        "runAsUser",
    ),
    "writable root": (
        lambda d: _scheduler_init(d)["securityContext"].update(readOnlyRootFilesystem=False),
        workload_problems,
        "readOnlyRootFilesystem",
    ),
    "escalation": (
        lambda d: _app_container(d)["securityContext"].pop("allowPrivilegeEscalation"),
        workload_problems,
        "allowPrivilegeEscalation",
    ),
    "capability kept": (
        lambda d: _app_container(d)["securityContext"]["capabilities"].update(add=["NET_ADMIN"]),
        workload_problems,
        "capabilities",
    ),
    "no seccomp": (_drop_seccomp, workload_problems, "seccompProfile"),
    "no memory limit": (
        lambda d: _app_container(d)["resources"]["limits"].pop("memory"),
        workload_problems,
        "resources.limits.memory",
    ),
    "latest image": (
        lambda d: _app_container(d).update(image="registry.example.com/flashq:latest"),
        workload_problems,
        "not pinned",
    ),
    "liveness on readyz": (
        lambda d: _app_container(d)["livenessProbe"]["httpGet"].update(path="/readyz"),
        workload_problems,
        "livenessProbe must GET /healthz",
    ),
    "no readiness": (
        lambda d: _app_container(d).pop("readinessProbe"),
        workload_problems,
        "readinessProbe must GET /readyz",
    ),
    "secret as a variable": (
        lambda d: _app_container(d)["env"].append(
            {
                "name": "SECRET_KEY",
                "valueFrom": {"secretKeyRef": {"name": "flashq-secrets", "key": "secret_key"}},
            }
        ),
        workload_problems,
        "comes from a Secret as a variable",
    ),
    "secret file outside the mount": (
        lambda d: _env(_app_container(d), "SECRET_KEY_FILE").update(value="/etc/secret_key"),
        workload_problems,
        "must be NAME_FILE naming a read-only Secret file",
    ),
    "real secret committed": (
        lambda d: _doc(d, "Secret", "flashq-secrets-example")["stringData"].update(
            secret_key="Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXhxdXV4cXV1eA"
        ),
        workload_problems,
        "not a PLACEHOLDER",
    ),
    "no migration job": (
        lambda d: d.remove(_doc(d, "Job", "flashq-migrate")),
        workload_problems,
        "no Job running manage.py migrate --noinput",
    ),
    "no /tmp": (
        lambda d: _app_container(d).update(
            volumeMounts=[m for m in _app_container(d)["volumeMounts"] if m["name"] != "tmp"]
        ),
        workload_problems,
        "must be an emptyDir",
    ),
    "api token mounted": (
        lambda d: _doc(d, "Job", "flashq-migrate")["spec"]["template"]["spec"].pop(
            "automountServiceAccountToken"
        ),
        workload_problems,
        "automountServiceAccountToken",
    ),
    "ingress to the scheduler": (
        lambda d: _doc(d, "NetworkPolicy", "flashq-app-ingress")["spec"].update(
            podSelector={"matchLabels": {"app.kubernetes.io/part-of": "flashq"}}
        ),
        network_problems,
        "pods other than the app",
    ),
    "the scheduler's metrics open to the workers": (
        lambda d: _doc(d, "NetworkPolicy", "flashq-scheduler-metrics")["spec"]["ingress"][0][
            "from"
        ][0]["namespaceSelector"].update(matchLabels={"flashq.io/workers": "true"}),
        network_problems,
        "into the scheduler only monitoring",
    ),
    "the scheduler's API port opened": (
        lambda d: _doc(d, "NetworkPolicy", "flashq-scheduler-metrics")["spec"]["ingress"][0][
            "ports"
        ][0].update(port=8000),
        network_problems,
        "into the scheduler only monitoring",
    ),
    "no default deny": (
        lambda d: d.remove(_doc(d, "NetworkPolicy", "default-deny-all")),
        network_problems,
        "no default-deny",
    ),
    "ingress from any namespace": (
        lambda d: _ingress_rules(d)[1]["from"][0].update(namespaceSelector={}),
        network_problems,
        "ingress only from a namespace",
    ),
    "ingress from another namespace": (
        lambda d: _ingress_rules(d)[1]["from"][0]["namespaceSelector"].update(
            matchLabels={"kubernetes.io/metadata.name": "default"}
        ),
        network_problems,
        "unexpected namespace",
    ),
    "ingress from everywhere": (
        lambda d: _ingress_rules(d).append({}),
        network_problems,
        "without `from` admits everyone",
    ),
    "ingress from a CIDR": (
        lambda d: _ingress_rules(d)[0]["from"].append({"ipBlock": {"cidr": "0.0.0.0/0"}}),
        network_problems,
        "ingress only from a namespace",
    ),
    "ingress on another port": (
        lambda d: _ingress_rules(d)[2]["ports"].append({"protocol": "TCP", "port": 9090}),
        network_problems,
        f"TCP {APP_PORT} only",
    ),
    "monitoring left out": (
        lambda d: _ingress_rules(d).pop(2),
        network_problems,
        "reachable from exactly",
    ),
    "egress to the web": (
        lambda d: _egress_rules(d).append(
            {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 443}]}
        ),
        network_problems,
        "egress only to 5432 and 53",
    ),
    "egress on any port": (
        lambda d: _egress_rules(d)[0].pop("ports"),
        network_problems,
        "any port",
    ),
    "egress anywhere": (
        lambda d: _egress_rules(d)[0].pop("to"),
        network_problems,
        "without `to` reaches everywhere",
    ),
    "dns anywhere": (
        lambda d: _egress_rules(d)[1]["to"][0].pop("namespaceSelector"),
        network_problems,
        "DNS only to kube-system",
    ),
    "the app as the owner": (_app_as_owner, database_role_problems, "Deployment/flashq-app: gets"),
    "the owner's Secret mounted in the scheduler": (
        lambda d: _doc(d, "Deployment", "flashq-scheduler")["spec"]["template"]["spec"][
            "volumes"
        ].append({"name": "db", "secret": {"secretName": OWNER_SECRET}}),
        database_role_problems,
        "Deployment/flashq-scheduler: gets the owner's",
    ),
    "the owner's URL as a variable": (
        lambda d: _app_container(d)["env"].append(
            {
                "name": "DATABASE_URL",
                "valueFrom": {"secretKeyRef": {"name": OWNER_SECRET, "key": OWNER_URL}},
            }
        ),
        database_role_problems,
        "Deployment/flashq-app: gets",
    ),
    "the migration as the runtime role": (
        lambda d: _env(_job_containers(d)[0], "DATABASE_URL_FILE").update(
            value="/run/secrets/flashq/database_url"
        ),
        database_role_problems,
        "container migrate: DATABASE_URL_FILE must be the owner's",
    ),
    "no grants for the runtime role": (
        lambda d: _doc(d, "Job", "flashq-migrate")["spec"]["template"]["spec"][
            "initContainers"
        ].pop(1),
        database_role_problems,
        "no container runs grant_runtime_role after migrate",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_MANIFESTS))
def test_a_broken_manifest_is_caught(case: str) -> None:
    edit, check, expected = BROKEN_MANIFESTS[case]
    docs = copy.deepcopy(k8s_documents())
    edit(docs)
    problems = check(docs)
    assert any(expected in problem for problem in problems), problems


# -- deploy/nginx/flashq.conf: access logs --------------------------------------------------

#: nginx variables that hold what the client sent as it sent it: the request line, the
#: path and query, headers, cookies, a Basic user name, the body. An access log format
#: writes the path only through a map that redacts card numbers (tests/test_tls_proxy.py
#: runs it).
RAW_REQUEST_VARIABLE = re.compile(
    r"\$(request|request_uri|uri|document_uri|args|query_string|request_body|remote_user"
    r"|http_\w+|arg_\w+|cookie_\w+)\b"
)


def _nginx_directives(text: str) -> str:
    return re.sub(r"(^|\s)#.*$", "", text, flags=re.MULTILINE)


def _nginx_blocks(text: str, name: str) -> list[str]:
    """The bodies of the top-level ``name { ... }`` blocks (comments dropped and quoted
    strings blanked, so the braces of a regex do not count)."""
    conf = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', _nginx_directives(text))
    bodies, depth, start = [], 0, -1
    for match in re.finditer(r"[{}]", conf):
        if match.group() == "{":
            if depth == 0 and re.search(rf"(^|\s){name}\s*$", conf[: match.start()]):
                start = match.end()
            depth += 1
        else:
            depth -= 1
            if depth == 0 and start >= 0:
                bodies.append(conf[start : match.start()])
                start = -1
    return bodies


def nginx_access_log_problems(text: str) -> list[str]:
    conf = _nginx_directives(text)
    formats = dict(re.findall(r"^\s*log_format\s+(\S+)\s+([^;]*);", conf, flags=re.MULTILINE))
    problems = [
        f"log_format {name} writes ${variable}, which holds the request as the client sent it"
        for name, line in formats.items()
        for variable in RAW_REQUEST_VARIABLE.findall(line)
    ]
    for directive in re.findall(r"^\s*access_log\s+([^;]+);", conf, flags=re.MULTILINE):
        words = directive.split()
        if words != ["off"] and (len(words) < 2 or words[1] not in formats):
            problems.append(
                f"access_log {directive} writes nginx's default format (the whole request line)"
            )
    for number, body in enumerate(_nginx_blocks(text, "server"), start=1):
        while re.search(r"\{[^{}]*\}", body):
            body = re.sub(r"\{[^{}]*\}", "", body)  # its locations
        if not re.search(r"^\s*access_log\s", body, flags=re.MULTILINE):
            problems.append(
                f"server block {number} sets no access_log: it inherits the distribution's,"
                " which writes the whole request line"
            )
    return problems


def test_the_nginx_access_logs_write_no_raw_request() -> None:
    conf = NGINX_CONF.read_text()
    assert len(_nginx_blocks(conf, "server")) == 2  # the check sees both servers
    assert nginx_access_log_problems(conf) == []


def _first(old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert old in text, f"{old!r} is not in {NGINX_CONF.name}: update this test"
        return text.replace(old, new, 1)

    return edit


BROKEN_NGINX: dict[str, tuple[Callable[[str], str], str]] = {
    "the request line": (_first("$request_method $flashq_log_path ", "$request "), "$request,"),
    "the raw path": (
        _first("$request_method $flashq_log_path ", "$request_method $request_uri "),
        "$request_uri",
    ),
    "the path without the map": (
        _first("$request_method $flashq_log_path ", "$request_method $uri "),
        "$uri,",
    ),
    "a referer": (
        _first('"$upstream_http_x_request_id"', '"$upstream_http_x_request_id" "$http_referer"'),
        "$http_referer",
    ),
    "the default format": (
        _first("access_log /var/log/nginx/access.log flashq;", "access_log /var/log/nginx/a.log;"),
        "default format",
    ),
    "a server inheriting the default": (
        _first("access_log /var/log/nginx/access.log flashq;", ""),
        "server block 1 sets no access_log",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_NGINX))
def test_a_broken_nginx_access_log_is_caught(case: str) -> None:
    edit, expected = BROKEN_NGINX[case]
    problems = nginx_access_log_problems(edit(NGINX_CONF.read_text()))
    assert any(expected in problem for problem in problems), problems
