"""`k3s kubectl` / `kubectl` on the lab's server nodes: a TEST DOUBLE of the Kubernetes API's command line.

Two halves:
- `client_script(...)`: the tiny executables written into `<lab.state_dir>/bin` (bind-mounted onto /usr/local/bin
  inside every server node). They send argv (+ stdin when `-f -` is used) to the lab's controller daemon over a Unix
  socket and print its answer. Inside a node's mount namespace nothing else of the lab is reachable.
- `run(cluster, argv, stdin)`: parses kubectl's arguments (argparse; anything not supported is refused with exit 1
  and a message naming it) and calls the object model in `kube.py`.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

import yaml

from pi_cluster.lab.kube import (
    CLUSTER_SCOPED,
    KIND_REF,
    KubeCluster,
    KubeError,
    Requirement,
    Result,
    load_yaml_docs,
    parse_duration,
    parse_selector,
    resolve_kind,
    selector_matches,
)

BANNER = ("TEST DOUBLE: this is the pi-cluster lab's stand-in for `k3s kubectl`, not Kubernetes. It answers the "
          "subset of kubectl that pi-cluster's checks use from the lab's state (network namespaces, kernel rules, "
          "DNS) and refuses everything else with exit code 1.")
SOCKET_NAME = "kube.sock"

_out = threading.local()


class _Exit(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Parser(argparse.ArgumentParser):
    """argparse that never prints or exits: help goes to the reply's stdout, errors become KubeError."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False  # kubectl has no prefix matching: `--ign` must not mean --ignore-not-found
        super().__init__(*args, **kwargs)

    def _print_message(self, message: str, file: Any = None) -> None:
        if message:
            _out.buf.append(message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise _Exit(status, message or "")

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments:"):
            extra = message.split(":", 1)[1].split()
            flags = [a for a in extra if a.startswith("-")]
            if flags:
                raise KubeError(f"error: unknown flag: {flags[0].split('=')[0]} (not supported by the pi-cluster lab "
                                f"kubectl stand-in for `{self.prog}`)")
            raise KubeError(f"error: unexpected argument(s) {' '.join(extra)} for `{self.prog}`")
        if "invalid choice" in message:
            raise KubeError(f"error: {message} (pi-cluster lab kubectl stand-in: `{self.prog}`)")
        raise KubeError(f"error: {message} (usage: {self.format_usage().strip()})")


def _ns_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", "--namespace", default=argparse.SUPPRESS, help="namespace (default: default)")


def build_parser() -> argparse.ArgumentParser:
    root = _Parser(prog="kubectl", description=BANNER, add_help=True)
    _ns_flags(root)
    sub = root.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)

    get = sub.add_parser("get", help="list or show objects as JSON/YAML", description=BANNER)
    _ns_flags(get)
    get.add_argument("resource", help="nodes|pods|services|endpointslices|namespaces|daemonsets|deployments "
                                      "(or KIND/NAME)")
    get.add_argument("names", nargs="*")
    get.add_argument("-A", "--all-namespaces", action="store_true")
    get.add_argument("-l", "--selector", default="")
    get.add_argument("--field-selector", default="")
    get.add_argument("-o", "--output", default="")
    get.add_argument("--ignore-not-found", action="store_true")
    get.add_argument("--no-headers", action="store_true")

    apply = sub.add_parser("apply", help="create or update objects from YAML (-f FILE or -f -)", description=BANNER)
    _ns_flags(apply)
    apply.add_argument("-f", "--filename", action="append", required=True)

    delete = sub.add_parser("delete", help="delete pod|service|namespace|daemonset|deployment", description=BANNER)
    _ns_flags(delete)
    delete.add_argument("resource", nargs="?")
    delete.add_argument("names", nargs="*")
    delete.add_argument("-f", "--filename", action="append")
    delete.add_argument("-l", "--selector", default="")
    delete.add_argument("--all", action="store_true")
    delete.add_argument("--ignore-not-found", action="store_true")
    delete.add_argument("--wait", default="true", choices=["true", "false"],
                        help="accepted; deletions in the lab are synchronous")
    delete.add_argument("--grace-period", type=int, default=None, help="accepted; lab pods stop at once")
    delete.add_argument("--now", action="store_true", help="accepted; lab pods stop at once")
    delete.add_argument("--timeout", default=None, help="accepted; deletions in the lab are synchronous")

    rollout = sub.add_parser("rollout", help="rollout status daemonset|deployment/NAME", description=BANNER)
    rsub = rollout.add_subparsers(dest="rollout_verb", metavar="SUBCOMMAND", parser_class=_Parser)
    status = rsub.add_parser("status", help="wait for a DaemonSet/Deployment to be rolled out", description=BANNER)
    _ns_flags(status)
    status.add_argument("resource")
    status.add_argument("name", nargs="?")
    status.add_argument("--timeout", default="0s")
    status.add_argument("-w", "--watch", default="true", choices=["true", "false"])

    wait = sub.add_parser("wait", help="wait --for=condition=Ready|delete pod ...", description=BANNER)
    _ns_flags(wait)
    wait.add_argument("resource")
    wait.add_argument("names", nargs="*")
    wait.add_argument("--for", dest="for_", required=True)
    wait.add_argument("-l", "--selector", default="")
    wait.add_argument("--all", action="store_true")
    wait.add_argument("-A", "--all-namespaces", action="store_true")
    wait.add_argument("--timeout", default="30s")

    version = sub.add_parser("version", help="client and server version", description=BANNER)
    version.add_argument("-o", "--output", default="")
    version.add_argument("--client", action="store_true")
    return root


def _namespace(args: argparse.Namespace, top: argparse.Namespace) -> tuple[str, bool]:
    ns = getattr(args, "namespace", None) or getattr(top, "namespace", None)
    return (ns or "default"), bool(ns)


def _split_resource(resource: str, names: list[str], verb: str) -> tuple[str, list[str]]:
    if "," in resource:
        raise KubeError(f'error: several resource types at once ("{resource}") are not supported by the lab stand-in;'
                        " ask for one kind per call")
    if "/" in resource:
        word, name = resource.split("/", 1)
        if names:
            raise KubeError("error: there is no need to specify a resource type as a separate argument when passing "
                            "arguments in resource/name form")
        return resolve_kind(word, verb), [name]
    return resolve_kind(resource, verb), names


def _field_filter(kind: str, text: str) -> list[tuple[str, str, str]]:
    allowed = {"metadata.name", "metadata.namespace"}
    if kind == "Pod":
        allowed |= {"spec.nodeName", "status.phase", "status.podIP"}
    out = []
    for term in filter(None, (t.strip() for t in text.split(","))):
        op = "!=" if "!=" in term else "="
        key, _, value = term.partition(op)
        key = key.rstrip("=").strip()
        value = value.lstrip("=").strip()
        if key not in allowed:
            raise KubeError(f'error: field selector "{term}": field label not supported: {key} (the lab stand-in '
                            f"supports {', '.join(sorted(allowed))} for {kind})")
        out.append((key, op, value))
    return out


def _field_value(obj: dict[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part, "") if isinstance(cur, dict) else ""
    return str(cur)


def _table(kind: str, items: list[dict[str, Any]], all_ns: bool, no_headers: bool) -> str:
    def row(o: dict[str, Any]) -> list[str]:
        m, s, st = o["metadata"], o.get("spec", {}), o.get("status", {})
        if kind == "Node":
            roles = ",".join(sorted(k.split("/", 1)[1] for k in m["labels"]
                                    if k.startswith("node-role.kubernetes.io/")))
            ready = next((c["status"] for c in st["conditions"] if c["type"] == "Ready"), "Unknown")
            return [m["name"], "Ready" if ready == "True" else "NotReady", roles or "<none>",
                    st["nodeInfo"]["kubeletVersion"]]
        if kind == "Pod":
            cs = st.get("containerStatuses", [])
            return [m["name"], f"{sum(1 for c in cs if c['ready'])}/{len(cs)}", st["phase"], st.get("podIP", "<none>"),
                    s.get("nodeName", "<none>")]
        if kind == "Service":
            ext = ",".join(i["ip"] for i in st.get("loadBalancer", {}).get("ingress", [])) or (
                "<pending>" if s["type"] == "LoadBalancer" else "<none>")
            ports = ",".join(f"{p['port']}" + (f":{p['nodePort']}" if "nodePort" in p else "") + f"/{p['protocol']}"
                             for p in s["ports"]) or "<none>"
            return [m["name"], s["type"], s["clusterIP"], ext, ports]
        if kind == "Namespace":
            return [m["name"], st["phase"]]
        if kind == "EndpointSlice":
            eps = ",".join(a for e in o["endpoints"] for a in e["addresses"]) or "<unset>"
            return [m["name"], o["addressType"], ",".join(str(p["port"]) for p in o["ports"]), eps]
        if kind == "Endpoints":
            return [m["name"], ",".join(f"{a['ip']}:{p['port']}" for ss in o.get("subsets", [])
                                        for a in ss.get("addresses", []) for p in ss["ports"]) or "<none>"]
        if kind == "DaemonSet":
            return [m["name"], str(st["desiredNumberScheduled"]), str(st["currentNumberScheduled"]),
                    str(st["numberReady"]), str(st["updatedNumberScheduled"]), str(st["numberAvailable"])]
        want = s.get("replicas", 1)
        return [m["name"], f"{st.get('readyReplicas', 0)}/{want}", str(st.get("updatedReplicas", 0)),
                str(st.get("availableReplicas", 0))]

    headers = {"Node": ["NAME", "STATUS", "ROLES", "VERSION"], "Pod": ["NAME", "READY", "STATUS", "IP", "NODE"],
               "Service": ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)"], "Namespace": ["NAME", "STATUS"],
               "EndpointSlice": ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS"],
               "DaemonSet": ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE"],
               "Deployment": ["NAME", "READY", "UP-TO-DATE", "AVAILABLE"], "Endpoints": ["NAME", "ENDPOINTS"]}[kind]
    rows = [([o["metadata"].get("namespace", "")] if all_ns else []) + row(o) for o in items]
    if all_ns:
        headers = ["NAMESPACE", *headers]
    if not no_headers:
        rows.insert(0, headers)
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n" for r in rows)


def _render(kind: str, objs: list[dict[str, Any]], single: bool, output: str, all_ns: bool,
            no_headers: bool) -> str:
    if output in ("json", "yaml"):
        data: Any = objs[0] if single else {"apiVersion": "v1", "items": objs, "kind": "List",
                                            "metadata": {"resourceVersion": ""}}
        if output == "json":
            return json.dumps(data, indent=4) + "\n"
        return yaml.safe_dump(data, sort_keys=True, default_flow_style=False)
    if output == "name":
        return "".join(f"{KIND_REF[kind]}/{o['metadata']['name']}\n" for o in objs)
    if output in ("", "wide"):
        return _table(kind, objs, all_ns, no_headers)
    raise KubeError(f'error: output format "{output}" is not supported by the pi-cluster lab kubectl stand-in '
                    "(supported: json, yaml, name, wide, default table)")


def _get(cluster: KubeCluster, args: argparse.Namespace, top: argparse.Namespace) -> Result:
    kind, names = _split_resource(args.resource, args.names, "get")
    ns, _ = _namespace(args, top)
    output = args.output
    if output.startswith(("jsonpath", "go-template", "custom-columns", "template")):
        raise KubeError(f'error: output format "{output.split("=")[0]}" is not supported by the pi-cluster lab '
                        "kubectl stand-in (use -o json)")
    all_ns = args.all_namespaces and kind not in CLUSTER_SCOPED
    if args.all_namespaces and names:
        raise KubeError("error: a resource cannot be retrieved by name across all namespaces")
    reqs = parse_selector(args.selector)
    fields = _field_filter(kind, args.field_selector)
    with cluster.lock:
        if kind not in CLUSTER_SCOPED and not cluster.namespace_exists(ns) and not all_ns and names:
            raise KubeError(f'Error from server (NotFound): namespaces "{ns}" not found')
        objs = cluster.list_objects(kind, None if (all_ns or kind in CLUSTER_SCOPED) else ns)
    objs = [o for o in objs if selector_matches(reqs, o["metadata"].get("labels") or {})]
    for key, op, value in fields:
        objs = [o for o in objs if (_field_value(o, key) == value) == (op == "=")]
    if names:
        by_name = {o["metadata"]["name"]: o for o in objs}
        found, missing = [by_name[n] for n in names if n in by_name], [n for n in names if n not in by_name]
        err = "" if args.ignore_not_found else "".join(
            f'Error from server (NotFound): {_plural(kind)} "{n}" not found\n' for n in missing)
        out = _render(kind, found, len(names) == 1, args.output, all_ns, args.no_headers) if found else ""
        return Result(1 if err else 0, out, err)
    if not objs and args.output in ("", "wide"):
        where = "" if (all_ns or kind in CLUSTER_SCOPED) else f" in {ns} namespace"
        return Result(0, "", f"No resources found{where}.\n")
    return Result(0, _render(kind, objs, False, args.output, all_ns, args.no_headers))


def _plural(kind: str) -> str:
    from pi_cluster.lab.kube import PLURAL
    return PLURAL[kind]


def _read_files(files: list[str], stdin: str, contents: dict[str, str], read_local: bool) -> list[tuple[str, Any]]:
    """Manifests named by -f: `-` is stdin; the client sends the files' text (it runs in the node's mount namespace,
    where the controller cannot see the file); names it did not send are read here."""
    docs: list[tuple[str, Any]] = []
    for f in files:
        if f == "-":
            docs += load_yaml_docs(stdin, "STDIN")
        elif f.startswith(("http://", "https://")):
            raise KubeError(f'error: -f {f}: URLs are not supported by the lab stand-in (pipe the file with -f -)')
        else:
            if f in contents:
                docs += load_yaml_docs(contents[f], f)
                continue
            path = Path(f)
            if not read_local:
                raise KubeError(f'error: the path "{f}" does not exist (or is not a regular file)')
            if path.is_dir():
                raise KubeError(f"error: -f {f}: directories are not supported by the lab stand-in")
            try:
                text = path.read_text()
            except OSError as e:
                raise KubeError(f'error: the path "{f}" does not exist' if not path.exists() else f"error: {e}") from e
            docs += load_yaml_docs(text, f)
    return docs


def _apply(cluster: KubeCluster, args: argparse.Namespace, top: argparse.Namespace, stdin: str,
           files: dict[str, str], read_local: bool) -> Result:
    ns, explicit = _namespace(args, top)
    return cluster.apply(_read_files(args.filename, stdin, files, read_local), ns, explicit)


def _delete(cluster: KubeCluster, args: argparse.Namespace, top: argparse.Namespace, stdin: str,
            files: dict[str, str], read_local: bool) -> Result:
    ns, _ = _namespace(args, top)
    if args.filename:
        if args.resource:
            raise KubeError("error: when -f is given, no resource or name may be given")
        out, err, code = [], [], 0
        for src, doc in _read_files(args.filename, stdin, files, read_local):
            if not isinstance(doc, dict) or not doc.get("kind"):
                raise KubeError(f'error: "{src}": a document without kind')
            kind = resolve_kind(str(doc["kind"]), "delete")
            meta = doc.get("metadata") or {}
            r = cluster.delete(kind, str(meta.get("namespace") or ns), [str(meta.get("name"))],
                               args.ignore_not_found)
            out.append(r.stdout)
            err.append(r.stderr)
            code = code or r.code
        return Result(code, "".join(out), "".join(err))
    if not args.resource:
        raise KubeError("error: You must provide one or more resources by argument or filename.")
    kind, names = _split_resource(args.resource, args.names, "delete")
    if kind not in ("Pod", "Service", "Namespace", "DaemonSet", "Deployment"):
        raise KubeError(f'error: the pi-cluster lab kubectl stand-in cannot delete "{args.resource}" '
                        "(supported: pod, service, namespace, daemonset, deployment)")
    if args.selector or args.all:
        if names:
            raise KubeError("error: name cannot be provided when a selector or --all is specified")
        reqs = parse_selector(args.selector)
        with cluster.lock:
            objs = cluster.list_objects(kind, None if kind in CLUSTER_SCOPED else ns)
        names = [o["metadata"]["name"] for o in objs if selector_matches(reqs, o["metadata"].get("labels") or {})]
        if kind == "Namespace" and args.all:
            raise KubeError("error: delete namespace --all is refused by the lab stand-in")
        if not names:
            return Result(0, "", f"No resources found{'' if kind in CLUSTER_SCOPED else f' in {ns} namespace'}.\n")
    if not names:
        raise KubeError(f'error: resource(s) were provided, but no name was specified for "{args.resource}"')
    return cluster.delete(kind, ns, names, args.ignore_not_found)


def _rollout(cluster: KubeCluster, args: argparse.Namespace, top: argparse.Namespace) -> Result:
    if args.rollout_verb != "status":
        raise KubeError("error: `rollout` needs a subcommand; the lab stand-in supports only `rollout status`")
    ns, _ = _namespace(args, top)
    kind, names = _split_resource(args.resource, [args.name] if args.name else [], "rollout status")
    if kind not in ("DaemonSet", "Deployment"):
        raise KubeError(f'error: rollout status of "{args.resource}" is not supported by the lab stand-in '
                        "(daemonset, deployment)")
    if len(names) != 1:
        raise KubeError("error: rollout status needs exactly one NAME (e.g. daemonset/echo)")
    return cluster.rollout_status(kind, ns, names[0], parse_duration(args.timeout), watch=args.watch == "true")


def _wait(cluster: KubeCluster, args: argparse.Namespace, top: argparse.Namespace) -> Result:
    ns, _ = _namespace(args, top)
    kind, names = _split_resource(args.resource, args.names, "wait")
    if kind != "Pod":
        raise KubeError(f'error: wait on "{args.resource}" is not supported by the lab stand-in (pods only; use '
                        "`rollout status` for daemonsets and deployments)")
    cond = args.for_
    if cond.lower() in ("condition=ready", "condition=ready=true"):
        condition = "ready"
    elif cond == "delete":
        condition = "delete"
    else:
        raise KubeError(f'error: --for="{cond}" is not supported by the lab stand-in (condition=Ready, delete)')
    reqs: list[Requirement] = parse_selector(args.selector)
    if not names and not args.selector and not args.all:
        raise KubeError("error: resource name may not be empty (give NAME, -l SELECTOR or --all)")
    return cluster.wait_pods(None if args.all_namespaces else ns, names, reqs, args.all, condition,
                             parse_duration(args.timeout))


def _version(cluster: KubeCluster, args: argparse.Namespace) -> Result:
    v = cluster.version_json()
    if args.client:
        v.pop("serverVersion")
    if args.output == "json":
        return Result(0, json.dumps(v, indent=2) + "\n")
    if args.output == "yaml":
        return Result(0, yaml.safe_dump(v, sort_keys=True))
    if args.output:
        raise KubeError(f'error: --output "{args.output}" is not supported for version (json, yaml)')
    out = f"Client Version: {v['clientVersion']['gitVersion']}\nKustomize Version: {v['kustomizeVersion']}\n"
    if "serverVersion" in v:
        out += f"Server Version: {v['serverVersion']['gitVersion']}\n"
    return Result(0, out)


def _check_global_flags(args: list[str]) -> None:
    """Flags before the verb: only -n/--namespace and --help exist here (argparse would take a flag's value for
    the verb and report that instead of the flag)."""
    i = 0
    while i < len(args) and args[i].startswith("-"):
        a = args[i]
        if a in ("-h", "--help"):
            return
        if a in ("-n", "--namespace"):
            i += 2
        elif a.startswith(("--namespace=", "-n=")) or (a.startswith("-n") and not a.startswith("--")):
            i += 1
        else:
            raise KubeError(f"error: unknown flag: {a.split('=')[0]} (not supported by the pi-cluster lab kubectl "
                            "stand-in)")


K3S_HELP = (f"k3s (pi-cluster lab)\n\n{BANNER}\n\nUsage: k3s kubectl [ARGS...]\n"
            "Only the `kubectl` subcommand (and --version) exists in the lab.\n")


def run(cluster: KubeCluster, argv: list[str], stdin: str = "", files: dict[str, str] | None = None,
        read_local: bool = True) -> Result:
    """Execute one `kubectl ...` (argv[0] == "kubectl") or `k3s ...` (argv[0] == "k3s") command line.

    `stdin` is used for `-f -`; `files` maps `-f` names to their text as read by the client."""
    files = files or {}
    prog = Path(argv[0]).name if argv else "kubectl"
    args_in = list(argv[1:])
    if prog == "k3s":
        if not args_in or args_in[0] in ("-h", "--help", "help"):
            return Result(0, K3S_HELP)
        if args_in[0] in ("--version", "-v", "version"):
            v = cluster.version_json()["serverVersion"]["gitVersion"]
            return Result(0, f"k3s version {v} (pi-cluster lab test double)\ngo version go1.22\n")
        if args_in[0] != "kubectl":
            return Result(1, "", f'error: k3s subcommand "{args_in[0]}" is not supported by the pi-cluster lab '
                                 "stand-in (only `k3s kubectl ...`)\n")
        args_in = args_in[1:]
    elif prog != "kubectl":
        return Result(1, "", f"error: unknown program {prog!r} (pi-cluster lab stand-in: kubectl or k3s)\n")
    _out.buf = []
    parser = build_parser()
    try:
        _check_global_flags(args_in)
        top, extra = parser.parse_known_args(args_in)
        if extra:
            parser.error("unrecognized arguments: " + " ".join(extra))
        verb = top.verb
        if verb is None:
            return Result(0, parser.format_help())
        if verb == "get":
            res = _get(cluster, top, top)
        elif verb == "apply":
            res = _apply(cluster, top, top, stdin, files, read_local)
        elif verb == "delete":
            res = _delete(cluster, top, top, stdin, files, read_local)
        elif verb == "rollout":
            res = _rollout(cluster, top, top)
        elif verb == "wait":
            res = _wait(cluster, top, top)
        else:
            res = _version(cluster, top)
        return res
    except _Exit as e:
        return Result(e.code, "".join(_out.buf), e.message)
    except KubeError as e:
        return Result(1, "", e.message.rstrip("\n") + "\n")
    except Exception as e:  # the lab refused (LabError) or failed: an answer with exit 1, never a success
        if type(e).__name__ != "LabError":
            raise
        return Result(1, "", f"Error from server (lab): {e}\n")


CLIENT_TEMPLATE = '''#!{python} -I
# {prog}: pi-cluster lab TEST DOUBLE of `{prog}` (not Kubernetes). It forwards its command line to the lab's
# controller daemon at {socket} and prints the answer. Generated by pi_cluster.lab.kubectl; do not edit.
import json, os, socket, sys

SOCK = {socket!r}
PROG = {prog!r}


def file_args(argv):
    out = []
    for i, a in enumerate(argv):
        if a in ("-f", "--filename") and i + 1 < len(argv):
            out.append(argv[i + 1])
        elif a.startswith(("-f=", "--filename=")):
            out.append(a.split("=", 1)[1])
        elif a.startswith("-f") and not a.startswith("--") and len(a) > 2:
            out.append(a[2:])
    return out


def main():
    argv = [PROG] + sys.argv[1:]
    names = file_args(argv)
    stdin = sys.stdin.read() if "-" in names else ""
    files = {{}}
    for name in names:
        if name != "-" and os.path.isfile(name):
            with open(name, encoding="utf-8") as f:
                files[name] = f.read()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(SOCK)
    except OSError as e:
        sys.stderr.write("error: the pi-cluster lab kubectl controller is not reachable at %s (%s); is the lab up?\\n"
                         % (SOCK, e))
        return 1
    s.sendall(json.dumps({{"argv": argv, "stdin": stdin, "files": files}}).encode() + b"\\n")
    s.shutdown(socket.SHUT_WR)
    chunks = []
    while True:
        b = s.recv(65536)
        if not b:
            break
        chunks.append(b)
    try:
        reply = json.loads(b"".join(chunks))
    except ValueError:
        sys.stderr.write("error: the pi-cluster lab kubectl controller closed the connection without an answer\\n")
        return 1
    sys.stdout.write(reply.get("stdout", ""))
    sys.stderr.write(reply.get("stderr", ""))
    return int(reply.get("code", 1))


sys.exit(main())
'''


def client_script(prog: str, socket_path: Path, python: str | None = None) -> str:
    return CLIENT_TEMPLATE.format(python=python or sys.executable, prog=prog, socket=str(socket_path))


def write_clients(bin_dir: Path, socket_path: Path) -> list[Path]:
    """Write the `k3s` and `kubectl` executables (mode 0755) into `bin_dir`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for prog in ("k3s", "kubectl"):
        path = bin_dir / prog
        tmp = bin_dir / f".{prog}.tmp"
        tmp.write_text(client_script(prog, socket_path))
        tmp.chmod(0o755)
        tmp.replace(path)
        out.append(path)
    return out
