"""The Kubernetes (deploy/k8s) and KServe (deploy/kserve) manifests: rendered as `kubectl apply -k` would, every
object validated against its schema, the references between objects consistent, and the container's command line
run for real against the halfserve binary (probes, metrics the autoscaler uses, drain time). See docs/deploy.md.

Usage: check_manifests.py HALFSERVE_BINARY      (run by run_manifests_test.sh with the `deploy` venv's Python)
"""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "python"))

import adapter_promql  # noqa: E402
import image_command  # noqa: E402
import kustomize_render  # noqa: E402
import manifests_live  # noqa: E402
import schema_validation  # noqa: E402
from harness import Checks  # noqa: E402

K8S_DIR = os.path.join(REPO, "deploy", "k8s")
KSERVE_DIR = os.path.join(REPO, "deploy", "kserve")
ADAPTER_RULES = "prometheus-adapter-rules.yaml"
# The oldest Kubernetes the manifests are meant for: the preStop sleep action is on by default from 1.30.
OLDEST_KUBERNETES = "1.30.0"
# halfserve's readiness grace: after SIGTERM, /readyz answers 503 for this long before the ports close
# (ServerOptions::readiness_grace).
READINESS_GRACE_SECONDS = 1
# What terminationGracePeriodSeconds must leave beyond preStop + readiness grace + drain: REST requests finishing,
# models unloading.
SHUTDOWN_MARGIN_SECONDS = 5
KSERVE_PROTOCOLS = {"v1", "v2", "grpc-v1", "grpc-v2"}  # KServe's InferenceServiceProtocol values
METRICS_PATH = "/monitoring/prometheus/metrics"


def selects(selector, labels):
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def by_kind(objects, kind):
    return [document for _, document in objects if document["kind"] == kind]


def validate_schemas(checks, label, objects, crd_schemas):
    versions = [schema_validation.newest_kubernetes_version()]
    if OLDEST_KUBERNETES in schema_validation.shipped_kubernetes_versions():
        versions.append(OLDEST_KUBERNETES)
    for version in versions:
        for file_name, document in objects:
            what = f"{label}/{file_name}: {document['kind']} {document['metadata'].get('name')} against {version}"
            try:
                print(f"ok: {what}: {schema_validation.validate(document, version, crd_schemas)}")
                checks.require(True, what)
            except schema_validation.SchemaProblem as problem:
                checks.require(False, f"{what}: {problem}")


def check_container_basics(checks, where, container, pod_spec, rest_port, grpc_port):
    """What the Deployment and the ServingRuntime share: probes on the REST port, security, resources, drain.
    Returns (argv, effective flags) of halfserve, from the image's entrypoint run with the container's env and args."""
    try:
        argv = image_command.image_argv(container)
        positional, args = image_command.effective_flags(argv)
        print(f"{where}: the image runs halfserve {' '.join(argv)}")
    except image_command.ImageCommandError as error:
        checks.require(False, f"{where}: {error}")
        return [], {}
    checks.expect(f"{where}: halfserve's positional arguments", positional, ["serve"])
    ports = {port.get("name"): port["containerPort"] for port in container.get("ports", [])}
    checks.expect(f"{where}: REST port", int(args.get("rest_api_port", 0)), rest_port)
    checks.expect(f"{where}: gRPC port", int(args.get("port", 0)), grpc_port)
    for name in ports:
        checks.require(name is None or (len(name) <= 15 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name)),
                       f"{where}: port name {name!r} is not an IANA service name (at most 15 characters)")
    wanted_paths = {"startupProbe": "/healthz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"}
    for probe, path in wanted_paths.items():
        http_get = container.get(probe, {}).get("httpGet", {})
        checks.expect(f"{where}: {probe} path", http_get.get("path"), path)
        port = http_get.get("port")
        checks.expect(f"{where}: {probe} port is the REST port", ports.get(port, port), rest_port)

    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    checks.require(3 <= pre_stop <= 15, f"{where}: preStop sleep {pre_stop} s (want a few seconds for endpoints to update)")
    drain = int(args.get("drain_seconds", 30))
    grace = pod_spec.get("terminationGracePeriodSeconds", 30)
    needed = pre_stop + READINESS_GRACE_SECONDS + drain + SHUTDOWN_MARGIN_SECONDS
    checks.require(grace >= needed, f"{where}: terminationGracePeriodSeconds {grace} < preStop {pre_stop} + readiness "
                                    f"grace {READINESS_GRACE_SECONDS} + drain {drain} + margin {SHUTDOWN_MARGIN_SECONDS}")

    pod_security = pod_spec.get("securityContext", {})
    security = container.get("securityContext", {})
    checks.expect(f"{where}: runAsNonRoot", security.get("runAsNonRoot", pod_security.get("runAsNonRoot")), True)
    checks.expect(f"{where}: runAsUser", security.get("runAsUser", pod_security.get("runAsUser")), 65532)
    checks.expect(f"{where}: readOnlyRootFilesystem", security.get("readOnlyRootFilesystem"), True)
    checks.expect(f"{where}: allowPrivilegeEscalation", security.get("allowPrivilegeEscalation"), False)
    checks.expect(f"{where}: capabilities dropped", security.get("capabilities", {}).get("drop"), ["ALL"])
    seccomp = security.get("seccompProfile", pod_security.get("seccompProfile", {}))
    checks.expect(f"{where}: seccomp profile", seccomp.get("type"), "RuntimeDefault")
    mounts = {mount["mountPath"]: mount["name"] for mount in container.get("volumeMounts", [])}
    volumes = {volume["name"]: volume for volume in pod_spec.get("volumes", [])}
    checks.require("/tmp" in mounts and "emptyDir" in volumes.get(mounts["/tmp"], {}),
                   f"{where}: a read-only root needs an emptyDir at /tmp")

    resources = container.get("resources", {})
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            checks.require(resource in resources.get(kind, {}), f"{where}: no {resource} {kind}")
    cpu_limit = str(resources.get("limits", {}).get("cpu", ""))
    checks.expect(f"{where}: --threads equals the CPU limit", args.get("threads"), cpu_limit)
    return argv, args


def check_k8s(checks, objects, adapter_rules):
    deployments = by_kind(objects, "Deployment")
    checks.expect("deploy/k8s: one Deployment", len(deployments), 1)
    deployment = deployments[0]
    pod_template = deployment["spec"]["template"]
    pod_labels = pod_template["metadata"].get("labels", {})
    pod_spec = pod_template["spec"]
    checks.require(selects(deployment["spec"]["selector"].get("matchLabels"), pod_labels),
                   "Deployment: selector does not match its pod template's labels (the API server refuses that)")
    containers = pod_spec["containers"]
    checks.expect("Deployment: containers", len(containers), 1)
    container = containers[0]
    checks.expect("Deployment: image", container.get("image"), "halfserve:latest")
    ports = {port["name"]: port["containerPort"] for port in container.get("ports", [])}
    checks.expect("Deployment: container ports", ports, {"grpc": 8500, "http": 8501})
    image = check_container_basics(checks, "Deployment", container, pod_spec, ports.get("http"), ports.get("grpc"))
    args = image[1]

    # Models: --model_base_path lies on the read-only mount of the PersistentVolumeClaim the kustomization creates.
    base_path = args.get("model_base_path", "")
    mounts = [mount for mount in container.get("volumeMounts", []) if base_path.startswith(mount["mountPath"].rstrip("/") + "/")]
    checks.expect("Deployment: --model_base_path is under one volume mount", len(mounts), 1)
    volumes = {volume["name"]: volume for volume in pod_spec.get("volumes", [])}
    claims = {claim["metadata"]["name"] for claim in by_kind(objects, "PersistentVolumeClaim")}
    if mounts:
        checks.expect("Deployment: models mount is read-only", mounts[0].get("readOnly"), True)
        claim = volumes.get(mounts[0]["name"], {}).get("persistentVolumeClaim", {})
        checks.require(claim.get("claimName") in claims, f"Deployment: models volume's claim {claim.get('claimName')!r} "
                                                         f"is not one of the kustomization's claims {sorted(claims)}")
    checks.require(float(args.get("file_system_poll_wait_seconds", 1)) > 0, "Deployment: polling off: no hot reload")

    services = {service["metadata"]["name"]: service for service in by_kind(objects, "Service")}
    for name, service in services.items():
        checks.require(selects(service["spec"].get("selector"), pod_labels), f"Service {name}: selector misses the pods")
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            checks.require(target in ports or target in ports.values(),
                           f"Service {name}: targetPort {target!r} is not a container port")
            checks.require(port.get("appProtocol"), f"Service {name}: port {port.get('name')} has no appProtocol")
    main = services.get("halfserve", {"spec": {"ports": []}})
    main_ports = {port["name"]: port for port in main["spec"]["ports"]}
    checks.expect("Service halfserve: port names", sorted(main_ports), ["grpc", "http"])
    checks.expect("Service halfserve: http goes to the REST port", ports.get(main_ports.get("http", {}).get("targetPort")), 8501)
    checks.expect("Service halfserve: grpc goes to the gRPC port", ports.get(main_ports.get("grpc", {}).get("targetPort")), 8500)
    headless = [service for service in services.values() if service["spec"].get("clusterIP") == "None"]
    checks.require(any("grpc" in {port["name"] for port in service["spec"]["ports"]} for service in headless),
                   "no headless Service with a grpc port for client-side gRPC balancing")

    # The HorizontalPodAutoscaler scales the Deployment on CPU (which needs CPU requests) and on the adapter's metric.
    hpas = by_kind(objects, "HorizontalPodAutoscaler")
    checks.expect("deploy/k8s: one HorizontalPodAutoscaler", len(hpas), 1)
    hpa = hpas[0]["spec"]
    checks.expect("HPA: target", hpa["scaleTargetRef"],
                  {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment["metadata"]["name"]})
    metric_types = {metric["type"]: metric for metric in hpa.get("metrics", [])}
    checks.expect("HPA: CPU resource metric", metric_types.get("Resource", {}).get("resource", {}).get("name"), "cpu")
    checks.require("cpu" in container.get("resources", {}).get("requests", {}), "HPA on CPU utilization needs CPU requests")
    hpa_metric = metric_types.get("Pods", {}).get("pods", {}).get("metric", {}).get("name")
    adapter_names = [rule.get("name", {}).get("as") for rule in adapter_rules.get("rules", [])]
    checks.require(hpa_metric in adapter_names, f"HPA: Pods metric {hpa_metric!r} is not produced by an adapter rule "
                                                f"(rules produce {adapter_names})")
    checks.require(hpa.get("minReplicas", 1) >= 2, "HPA: minReplicas below 2 leaves no pod serving while one drains")

    for pdb in by_kind(objects, "PodDisruptionBudget"):
        checks.require(selects(pdb["spec"]["selector"].get("matchLabels"), pod_labels), "PodDisruptionBudget: selector misses the pods")
    checks.expect("deploy/k8s: one PodDisruptionBudget", len(by_kind(objects, "PodDisruptionBudget")), 1)

    monitors = by_kind(objects, "ServiceMonitor")
    checks.expect("deploy/k8s: one ServiceMonitor", len(monitors), 1)
    monitor = monitors[0]["spec"]
    scraped = [name for name, service in services.items()
               if selects(monitor["selector"].get("matchLabels"), service["metadata"].get("labels", {}))]
    checks.expect("ServiceMonitor: Services selected (each pod scraped once)", scraped, ["halfserve"])
    for endpoint in monitor.get("endpoints", []):
        checks.require(endpoint.get("port") in main_ports, f"ServiceMonitor: port {endpoint.get('port')!r} is not on Service halfserve")
        checks.expect("ServiceMonitor: metrics path", endpoint.get("path"), METRICS_PATH)
    return container, image


def check_adapter_rules(checks, adapter_rules):
    """The rule's structure; whether it finds halfserve's real series is checked live (manifests_live)."""
    rules = adapter_rules.get("rules", [])
    checks.expect("adapter: one rule", len(rules), 1)
    rule = rules[0]
    checks.expect("adapter: fields", sorted(rule), ["metricsQuery", "name", "resources", "seriesQuery"])
    series = re.search(r'__name__="([^"]+)"', rule.get("seriesQuery", ""))
    series_name = series.group(1) if series else ""
    checks.require(re.search(rule.get("name", {}).get("matches", "^$"), series_name),
                   f"adapter: name.matches does not match the series {series_name!r}")
    checks.expect("adapter: resources", rule.get("resources", {}).get("overrides"),
                  {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}})
    query = rule.get("metricsQuery", "")
    checks.require("<<.LabelMatchers>>" in query and "<<.GroupBy>>" in query,
                   "adapter: metricsQuery must use <<.LabelMatchers>> and <<.GroupBy>> to select and group per pod")
    names = set(re.findall(r'__name__="([^"]+)"', query))
    checks.require(len(names) == 2 and all(name.endswith(("_sum", "_count")) for name in names),
                   f"adapter: metricsQuery should divide a histogram's _sum rate by its _count rate, names {sorted(names)}")
    return series_name, names


def check_kserve(checks, objects, claims):
    runtimes = by_kind(objects, "ServingRuntime")
    services = by_kind(objects, "InferenceService")
    checks.expect("deploy/kserve: one ServingRuntime and one InferenceService", (len(runtimes), len(services)), (1, 1))
    runtime, service = runtimes[0], services[0]
    spec = runtime["spec"]
    protocols = set(spec.get("protocolVersions", []))
    checks.require(protocols <= KSERVE_PROTOCOLS,
                   f"ServingRuntime: unknown protocolVersions {sorted(protocols - KSERVE_PROTOCOLS)}")
    checks.require({"v1", "v2"} <= protocols, "ServingRuntime: protocolVersions must include v1 and v2")
    container = spec["containers"][0]
    checks.expect("ServingRuntime: container name", container["name"], "kserve-container")
    ports = container.get("ports", [])
    predictor = service["spec"]["predictor"]
    grace = predictor.get("terminationGracePeriodSeconds", 30)
    # KServe's predictor pod: the runtime's container and volumes, the InferenceService's grace period. KServe sends
    # HTTP to the first container port, and marks ports named *grpc* or *h2c* as HTTP/2.
    pod_spec = {"volumes": spec.get("volumes", []), "terminationGracePeriodSeconds": grace}
    rest_port = ports[0]["containerPort"] if ports else None
    grpc_port = next((port["containerPort"] for port in ports if re.search("grpc|h2c", port["name"])), None)
    image = check_container_basics(checks, "ServingRuntime", container, pod_spec, rest_port, grpc_port)
    args = image[1]
    checks.expect("ServingRuntime: model name from KServe", args.get("model_name"), "{{.Name}}")
    checks.expect("ServingRuntime: model path KServe mounts", args.get("model_base_path"), "/mnt/models")
    checks.expect("ServingRuntime: first port's name", ports[0]["name"] if ports else None, "http1")

    model = predictor["model"]
    checks.expect("InferenceService: runtime", model.get("runtime"), runtime["metadata"]["name"])
    formats = {entry["name"] for entry in spec.get("supportedModelFormats", [])}
    checks.require(model["modelFormat"]["name"] in formats,
                   f"InferenceService: model format {model['modelFormat']['name']!r} not in {formats}")
    checks.require(model.get("protocolVersion", "v1") in protocols,
                   "InferenceService: protocolVersion not supported by the runtime")
    storage = re.fullmatch(r"pvc://([^/]+)(/.*)?", model.get("storageUri", ""))
    checks.require(storage and storage.group(1) in claims, f"InferenceService: storageUri {model.get('storageUri')!r} is not "
                                                           f"a pvc:// URI of a claim in deploy/k8s {sorted(claims)}")
    mode = service["metadata"].get("annotations", {}).get("serving.kserve.io/deploymentMode")
    checks.require(len(ports) < 2 or mode in ("RawDeployment", "Standard"),
                   "InferenceService: two container ports need deploymentMode RawDeployment/Standard (Knative allows one)")
    return container, image, service["metadata"]["name"], grace


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().split("\n\n")[1])
    halfserve = os.path.abspath(sys.argv[1])
    checks = Checks()
    crd_schemas = schema_validation.load_crd_schemas()
    try:
        k8s_objects = kustomize_render.render(K8S_DIR, not_resources=[ADAPTER_RULES])
        kserve_objects = kustomize_render.render(KSERVE_DIR)
    except kustomize_render.RenderError as error:
        print(f"FAIL: {error}")
        sys.exit(1)
    print(f"rendered deploy/k8s: {len(k8s_objects)} objects, deploy/kserve: {len(kserve_objects)} objects "
          f"(resources of kustomization.yaml, by this script)")
    for folder, objects in ((K8S_DIR, k8s_objects), (KSERVE_DIR, kserve_objects)):
        try:
            theirs = kustomize_render.kubectl_kustomize(folder)
        except kustomize_render.RenderError as error:
            checks.require(False, str(error))
            continue
        if theirs is None:
            print(f"note: no kubectl here, so {os.path.relpath(folder, REPO)} is rendered by this script only")
        else:
            checks.require(kustomize_render.same_objects([document for _, document in objects], theirs),
                           f"kubectl kustomize {folder} renders other objects than this script")
            print(f"ok: kubectl kustomize {os.path.relpath(folder, REPO)} renders the same {len(theirs)} objects")

    validate_schemas(checks, "deploy/k8s", k8s_objects, crd_schemas)
    validate_schemas(checks, "deploy/kserve", kserve_objects, crd_schemas)

    adapter_rules = kustomize_render.load_documents(os.path.join(K8S_DIR, ADAPTER_RULES))
    checks.expect(f"{ADAPTER_RULES}: one document", len(adapter_rules), 1)
    adapter_rules = adapter_rules[0] if adapter_rules else {}
    series_name, query_names = check_adapter_rules(checks, adapter_rules)
    if adapter_rules.get("rules"):
        adapter_promql.check(checks, adapter_rules["rules"][0], query_names)
    deployment_container, deployment_image = check_k8s(checks, k8s_objects, adapter_rules)
    claims = {claim["metadata"]["name"] for claim in by_kind(k8s_objects, "PersistentVolumeClaim")}
    runtime_container, runtime_image, model_name, runtime_grace = check_kserve(checks, kserve_objects, claims)

    deployment = by_kind(k8s_objects, "Deployment")[0]["spec"]["template"]["spec"]
    manifests_live.check_deployment_command(checks, halfserve, deployment_container, deployment_image, deployment,
                                            {series_name, *query_names})
    manifests_live.check_runtime_command(checks, halfserve, runtime_container, runtime_image, model_name, runtime_grace)
    checks.finish()


if __name__ == "__main__":
    main()
