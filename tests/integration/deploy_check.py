#!/usr/bin/env python3
"""Structural checks of deploy/docker and deploy/k8s (used by test_deploy.sh).

    deploy_check.py docker|k8s REPO BINDIR KEYDIR WORKDIR

REPO is the repository root, BINDIR holds the built programs, KEYDIR a key
directory made by deploy/provision-keys.sh (4 devices w0..w3), WORKDIR a
scratch directory. Every check that fails prints "FAIL: ..." and the
script exits 1; each group that passes prints "ok: ...".

Settings are checked by running the programs themselves: a config file and
the arguments a manifest gives are passed to `PROGRAM ... --check-config`,
which parses and validates everything (unknown keys and flags included) and
prints the effective settings.
"""
import os
import re
import subprocess
import sys

import yaml

FAILED = []


def check(cond, what):
    if not cond:
        FAILED.append(what)
        print("FAIL: " + what)
    return cond


def conf_lines(text):
    """key -> value of a `key = value` config text."""
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


def check_config(bindir, prog, args, what):
    """Run PROG ARGS --check-config; return its settings (key -> value)."""
    r = subprocess.run([os.path.join(bindir, prog)] + args +
                       ["--check-config"], capture_output=True, text=True,
                       timeout=30)
    if not check(r.returncode == 0, "%s: --check-config exit %d: %s" %
                 (what, r.returncode, r.stderr.strip())):
        return {}
    return conf_lines(r.stdout)


def check_settings(got, want, what):
    """Every key of the file is printed back with the same value."""
    for k, v in want.items():
        check(got.get(k) == v, "%s: %s = %r, effective %r" %
              (what, k, v, got.get(k)))


def port_of(addr):
    return int(addr.rsplit(":", 1)[1])


def write(workdir, name, text):
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def run_keys(keydir):
    return sorted(f for f in os.listdir(keydir) if f.endswith(".key"))


# ---------------------------------------------------------------- docker

def dockerfile_runs(text):
    """The RUN commands (continuations joined) of each stage."""
    text = re.sub(r"\\\n", " ", text)
    stages, cur = {}, None
    for line in text.splitlines():
        line = line.strip()
        m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
        if m:
            cur = m.group(2) or m.group(1)
            stages[cur] = {"from": m.group(1), "run": [], "lines": []}
            continue
        if cur is not None:
            stages[cur]["lines"].append(line)
            if line.upper().startswith("RUN "):
                stages[cur]["run"].append(line[4:])
    return stages


def apt_packages(cmd):
    pkgs = []
    for part in re.split(r"&&|;", cmd):
        words = part.split()
        if len(words) > 2 and words[0] == "apt-get" and "install" in words:
            pkgs += [w for w in words[words.index("install") + 1:]
                     if not w.startswith("-")]
    return pkgs


def needed_packages(binary):
    """Debian packages providing the NEEDED libraries of a binary."""
    out = subprocess.run(["readelf", "-d", binary], capture_output=True,
                         text=True, check=True).stdout
    libs = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)
    cache = subprocess.run(["ldconfig", "-p"], capture_output=True,
                           text=True, check=True).stdout
    pkgs = {}
    for lib in libs:
        m = re.search(r"^\s*%s \(libc6,x86-64\) => (\S+)$" % re.escape(lib),
                      cache, re.M) or \
            re.search(r"^\s*%s \([^)]*\) => (\S+)$" % re.escape(lib),
                      cache, re.M)
        if not check(m is not None, "%s: %s not in the ld cache" %
                     (binary, lib)):
            continue
        path = os.path.realpath(m.group(1))
        r = subprocess.run(["dpkg", "-S", path], capture_output=True,
                           text=True)
        if r.returncode != 0:  # merged /usr: dpkg knows the /lib path
            r = subprocess.run(["dpkg", "-S", path.replace("/usr/lib/",
                                                           "/lib/", 1)],
                               capture_output=True, text=True)
        if check(r.returncode == 0, "%s: no package owns %s" % (lib, path)):
            pkgs[lib] = r.stdout.split(":")[0].strip()
    return pkgs


def check_docker(repo, bindir, keydir, workdir):
    ddir = os.path.join(repo, "deploy", "docker")
    text = open(os.path.join(ddir, "Dockerfile")).read()
    stages = dockerfile_runs(text)
    check(set(stages) >= {"build", "runtime", "coordinator", "worker"},
          "Dockerfile stages %s" % sorted(stages))
    check("ARG DEBIAN_IMAGE=debian:bookworm-slim" in text,
          "Dockerfile: base image is not debian:bookworm-slim")

    # every package installed exists in Debian (apt lists of this machine)
    pkgs = [p for s in stages.values() for c in s["run"]
            for p in apt_packages(c)]
    check(len(pkgs) >= 8, "Dockerfile installs only %s" % pkgs)
    for p in pkgs:
        r = subprocess.run(["apt-cache", "show", "--no-all-versions", p],
                           capture_output=True, text=True)
        check(r.returncode == 0 and ("Package: %s\n" % p) in r.stdout,
              "Dockerfile: package '%s' is not in Debian (apt-cache show)"
              % p)
    print("ok: the %d packages of the Dockerfile exist in Debian: %s"
          % (len(pkgs), " ".join(pkgs)))

    # the runtime image provides every library the programs load
    runtime = set(p for c in stages.get("runtime", {"run": []})["run"]
                  for p in apt_packages(c))
    base = {"libc6", "libgcc-s1", "libstdc++6"}  # in bookworm-slim
    for prog in ("fedcomp-coordinator", "fedcomp-worker", "fedcomp-keygen"):
        for lib, pkg in needed_packages(os.path.join(bindir, prog)).items():
            check(pkg in runtime or pkg in base,
                  "%s needs %s from %s, which the runtime image lacks"
                  % (prog, lib, pkg))
    check("dataset-fashion-mnist" in runtime,
          "the runtime image lacks the data set")
    print("ok: the runtime image has the libraries of the programs")

    # the build runs the project's own make targets
    makefile = open(os.path.join(repo, "Makefile")).read()
    outer = re.search(r"^OUTER_TARGETS := (.*?)(?<!\\)$", makefile,
                      re.M | re.S).group(1).replace("\\", " ").split()
    outer += ["deps", "clean", "uninstall"]
    targets = [t for c in stages["build"]["run"]
               for t in re.findall(r"\bmake\s+(?:-\S+\s+)*([a-z][a-z-]*)", c)]
    check(targets[:3] == ["deps", "all", "install"],
          "the build stage runs make %s, want deps, all, install" % targets)
    for t in targets:
        check(t in outer, "Dockerfile runs 'make %s', not a Makefile "
              "target" % t)
    inst = re.search(r"make install DESTDIR=(\S+) PREFIX=(\S+)", text)
    check(inst is not None and
          ("COPY --from=build %s%s/bin/ /usr/local/bin/" %
           (inst.group(1), inst.group(2))) in text,
          "COPY --from=build does not take what make install wrote")
    for st, prog in (("coordinator", "fedcomp-coordinator"),
                     ("worker", "fedcomp-worker")):
        check(any('ENTRYPOINT ["/usr/local/bin/%s"]' % prog in line
                  for line in stages[st]["lines"]),
              "stage %s does not run %s" % (st, prog))
    print("ok: the build stage runs make %s" % " ".join(targets))

    # compose: secrets, configs, ports, flags
    comp = yaml.safe_load(open(os.path.join(ddir, "compose.yaml")))
    svcs = comp["services"]
    workers = sorted(s for s in svcs if s != "coordinator")
    check(len(workers) >= 2, "compose has workers %s" % workers)
    made = set(os.listdir(keydir)) | set(
        "authorized-keys/" + f
        for f in os.listdir(os.path.join(keydir, "authorized-keys")))
    for name, sec in comp["secrets"].items():
        rel = sec["file"]
        check(rel.startswith("./keys/") and rel[len("./keys/"):] in made,
              "compose secret %s: %s is not made by provision-keys.sh"
              % (name, rel))
    for name, svc in svcs.items():
        for s in svc.get("secrets", []):
            check(s["source"] in comp["secrets"],
                  "service %s: unknown secret %s" % (name, s["source"]))
        for c in svc.get("configs", []):
            check(c["source"] in comp["configs"],
                  "service %s: unknown config %s" % (name, c["source"]))
    cconf_text = open(os.path.join(ddir, "coordinator.conf")).read()
    cconf = conf_lines(cconf_text)
    got = check_config(bindir, "fedcomp-coordinator",
                       ["--config", os.path.join(ddir, "coordinator.conf")],
                       "docker coordinator.conf")
    check_settings(got, cconf, "docker coordinator.conf")
    coord = svcs["coordinator"]
    targets = {s["target"] for s in coord["secrets"]}
    check(cconf["curve-secret"] in targets,
          "coordinator secret targets %s lack %s" % (targets,
                                                     cconf["curve-secret"]))
    mounts = [v.split(":")[1] for v in coord["volumes"]]
    check(cconf["authorized-keys"] in mounts,
          "authorized-keys %s is not mounted" % cconf["authorized-keys"])
    check(any(m == "/var/lib/fedcomp" for m in mounts) and
          cconf["state-dir"].startswith("/var/lib/fedcomp/") and
          cconf["report-dir"].startswith("/var/lib/fedcomp/"),
          "state and reports are not on the coordinator's volume")
    ports = [p.rsplit(":", 1)[1] for p in coord["ports"]]
    check(str(port_of(cconf["bind"])) in ports and
          str(port_of(cconf["metrics-bind"])) in ports,
          "published ports %s miss %s or %s" % (ports, cconf["bind"],
                                                cconf["metrics-bind"]))
    wconf = conf_lines(open(os.path.join(ddir, "worker.conf")).read())
    check(wconf["connect"] == "tcp://coordinator:%d" % port_of(cconf["bind"]),
          "worker connect %s is not the coordinator service" %
          wconf["connect"])
    for w in workers:
        svc = svcs[w]
        cmd = [a.replace("/etc/fedcomp/worker.conf",
                         os.path.join(ddir, "worker.conf"))
               for a in svc["command"]]
        got = check_config(bindir, "fedcomp-worker", cmd,
                           "compose service %s" % w)
        check_settings(got, wconf, "compose %s worker.conf" % w)
        check(got.get("id") == w, "service %s runs as device %s"
              % (w, got.get("id")))
        secs = {s["target"]: s["source"] for s in svc["secrets"]}
        check(secs.get(wconf["curve-key"]) == w + "_key" and
              secs.get(wconf["coordinator-key"]) == "coordinator_pub",
              "service %s: secrets %s do not match its config" % (w, secs))
        check("authorized-keys/%s.pub" % w in made,
              "no authorized key for %s" % w)
    shards = [svcs[w]["command"][svcs[w]["command"].index("--shard") + 1]
              for w in workers]
    check(len(set(shards)) == len(workers),
          "compose workers share a shard: %s" % shards)
    print("ok: compose.yaml: %d workers, secrets, configs, ports and flags "
          "agree" % len(workers))


# ---------------------------------------------------------------- k8s

def k8s_docs(repo):
    docs = []
    kdir = os.path.join(repo, "deploy", "k8s")
    for f in sorted(os.listdir(kdir)):
        if f.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(open(os.path.join(kdir, f)))
                     if d]
    return docs


def by_kind(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def container_mounts(pod):
    c = pod["containers"][0]
    return {m["name"]: m for m in c.get("volumeMounts", [])}


def secret_data(yaml_text):
    return {d["metadata"]["name"]: set(d["data"])
            for d in yaml.safe_load_all(yaml_text) if d}


def check_k8s(repo, bindir, keydir, workdir):
    docs = k8s_docs(repo)
    for d in docs:
        check({"apiVersion", "kind", "metadata"} <= set(d),
              "manifest without apiVersion/kind/metadata: %s" % d)
    sts = by_kind(docs, "StatefulSet")
    svcs = by_kind(docs, "Service")
    cms = by_kind(docs, "ConfigMap")
    jobs = by_kind(docs, "Job")
    r = subprocess.run([os.path.join(repo, "deploy", "k8s",
                                     "make-secrets.sh"), keydir],
                       capture_output=True, text=True)
    check(r.returncode == 0, "make-secrets.sh: %s" % r.stderr)
    secrets = secret_data(r.stdout)
    print("ok: make-secrets.sh made %s" % ", ".join(sorted(secrets)))

    # ---- coordinator
    check(list(sts) == ["fedcomp-coordinator"], "StatefulSets %s" % list(sts))
    ss = sts["fedcomp-coordinator"]["spec"]
    pod = ss["template"]["spec"]
    c = pod["containers"][0]
    check(ss["replicas"] == 1, "more than one coordinator")
    vct = {v["metadata"]["name"]: v for v in ss["volumeClaimTemplates"]}
    mounts = container_mounts(pod)
    vols = {v["name"]: v for v in pod["volumes"]}
    for name in mounts:
        check(name in vols or name in vct,
              "coordinator mounts undeclared volume %s" % name)
    check("state" in vct and mounts["state"]["mountPath"] == "/var/lib/fedcomp",
          "the claim template 'state' is not mounted at /var/lib/fedcomp")
    args = c["args"]
    conf_path = args[args.index("--config") + 1]
    cm_mount = [m for m in mounts.values() if m["mountPath"] == conf_path]
    check(len(cm_mount) == 1, "--config %s is not a mount" % conf_path)
    cm_name = vols[cm_mount[0]["name"]]["configMap"]["name"]
    key = cm_mount[0]["subPath"]
    text = cms[cm_name]["data"][key]
    cconf = conf_lines(text)
    local = write(workdir, "k8s-coordinator.conf", text)
    got = check_config(bindir, "fedcomp-coordinator",
                       [local if a == conf_path else a for a in args],
                       "k8s coordinator args + ConfigMap")
    check_settings(got, cconf, "k8s coordinator.conf")
    for k in ("state-dir", "report-dir", "save-model"):
        check(cconf[k].startswith("/var/lib/fedcomp/"),
              "%s %s is not on the claim" % (k, cconf[k]))
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    cred = env.get("CREDENTIALS_DIRECTORY")
    secret_mounts = {vols[n]["secret"]["secretName"]: mounts[n]
                     for n in mounts if n in vols and "secret" in vols[n]}
    for name, m in secret_mounts.items():
        check(name in secrets, "coordinator uses Secret %s, which "
              "make-secrets.sh does not make" % name)
    check(secret_mounts["fedcomp-coordinator-key"]["mountPath"] == cred and
          cconf["curve-secret"] in secrets["fedcomp-coordinator-key"],
          "curve-secret %s is not in the Secret mounted at "
          "CREDENTIALS_DIRECTORY %s" % (cconf["curve-secret"], cred))
    check(secret_mounts["fedcomp-authorized-keys"]["mountPath"] ==
          cconf["authorized-keys"], "authorized-keys are not mounted at %s"
          % cconf["authorized-keys"])
    for n, v in vols.items():
        mode = v.get("secret", {}).get("defaultMode")
        if v.get("secret", {}).get("secretName") == "fedcomp-coordinator-key":
            check(mode is not None and mode & 0o007 == 0,
                  "the coordinator key is readable by others (mode %o)"
                  % (mode or 0o644))
    cports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check(cports.get("zmq") == port_of(cconf["bind"]) and
          cports.get("metrics") == port_of(cconf["metrics-bind"]),
          "container ports %s differ from bind/metrics-bind" % cports)
    svc = svcs.get("fedcomp-coordinator")
    check(svc is not None and ss["serviceName"] == "fedcomp-coordinator",
          "no Service fedcomp-coordinator")
    sp = {p["port"]: p["targetPort"] for p in svc["spec"]["ports"]}
    check(sp.get(5555) == "zmq" and sp.get(9464) == "metrics",
          "Service ports %s, want 5555 -> zmq and 9464 -> metrics" % sp)
    labels = ss["template"]["metadata"]["labels"]
    check(all(labels.get(k) == v for k, v in svc["spec"]["selector"].items())
          and ss["selector"]["matchLabels"].items() <= labels.items(),
          "Service/StatefulSet selectors do not match the pod labels")
    print("ok: coordinator StatefulSet, claim, Service 5555/9464, ConfigMap, "
          "Secrets and flags agree")

    # ---- workers
    check(list(jobs) == ["fedcomp-workers"], "Jobs %s" % list(jobs))
    js = jobs["fedcomp-workers"]["spec"]
    n = js["completions"]
    check(js.get("completionMode") == "Indexed" and js["parallelism"] == n,
          "the worker Job is not Indexed with parallelism = completions")
    pod = js["template"]["spec"]
    c = pod["containers"][0]
    mounts = container_mounts(pod)
    vols = {v["name"]: v for v in pod["volumes"]}
    args = c["args"]
    conf_path = args[args.index("--config") + 1]
    cm_mount = [m for m in mounts.values() if m["mountPath"] == conf_path][0]
    text = cms[vols[cm_mount["name"]]["configMap"]["name"]]["data"][
        cm_mount["subPath"]]
    wconf = conf_lines(text)
    local = write(workdir, "k8s-worker.conf", text)
    env = {e["name"]: e for e in c["env"]}
    check("job-completion-index" in env["INDEX"]["valueFrom"]["fieldRef"]
          ["fieldPath"], "INDEX is not the Job completion index")
    cred = env["CREDENTIALS_DIRECTORY"]["value"]
    keys_mount = [m for m in mounts.values() if m["mountPath"] == cred]
    check(len(keys_mount) == 1, "nothing mounted at CREDENTIALS_DIRECTORY")
    sname = vols[keys_mount[0]["name"]]["secret"]["secretName"]
    mode = vols[keys_mount[0]["name"]]["secret"].get("defaultMode", 0o644)
    check(mode & 0o007 == 0, "device keys readable by others (%o)" % mode)
    check(sname in secrets, "workers use Secret %s, not made" % sname)
    devkeys = secrets.get(sname, set())
    check(wconf["coordinator-key"] in devkeys,
          "%s not in Secret %s" % (wconf["coordinator-key"], sname))
    check(len([k for k in devkeys if k.endswith(".key")]) == n,
          "Secret %s has keys %s for %d indexes" % (sname, devkeys, n))
    check(wconf["connect"] == "tcp://fedcomp-coordinator:5555",
          "workers connect to %s" % wconf["connect"])
    for i in range(n):
        a = [x.replace("$(INDEX)", str(i)) for x in args]
        a = [local if x == conf_path else x for x in a]
        got = check_config(bindir, "fedcomp-worker", a, "k8s worker %d" % i)
        check_settings(got, wconf, "k8s worker %d worker.conf" % i)
        check(got.get("curve-key") in devkeys,
              "worker %d key %s not in %s" % (i, got.get("curve-key"), sname))
        check(got.get("shard") == "%d/%d" % (i, n),
              "worker %d has shard %s" % (i, got.get("shard")))
    print("ok: worker Job: %d indexes, keys, shards, ConfigMap and flags "
          "agree" % n)


def main():
    what, repo, bindir, keydir, workdir = sys.argv[1:6]
    if what == "docker":
        check_docker(repo, bindir, keydir, workdir)
    else:
        check_k8s(repo, bindir, keydir, workdir)
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
