// Run-time checks of rendered Kubernetes objects: the required fields and the rules the API
// server enforces on them (names, one source per volume, mounts that name a volume, probes
// only on sidecars, quantities). TypeScript already checks the shapes against
// kubernetes-types; this catches what types cannot (an empty name, a dangling mount).
import type { Job } from "kubernetes-types/batch/v1.js";
import type {
  ConfigMap,
  Container,
  PersistentVolumeClaim,
  PersistentVolumeClaimSpec,
  Pod,
  PodSpec,
  Probe,
  Volume,
} from "kubernetes-types/core/v1.js";

const LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const CONFIG_KEY = /^[-._a-zA-Z0-9]+$/;
const QUANTITY = /^(\d+(\.\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$/;
const PORT_NAME = /^(?=.*[a-z])[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$/;
const VOLUME_SOURCES = [
  "configMap",
  "emptyDir",
  "persistentVolumeClaim",
  "nfs",
  "ephemeral",
  "secret",
];

export function validateObject(object: ConfigMap | Pod | Job | PersistentVolumeClaim): string[] {
  const problems: string[] = [];
  const where = `${object.kind ?? "?"} ${object.metadata?.name ?? "?"}`;
  const check = (ok: boolean, problem: string) => {
    if (!ok) problems.push(`${where}: ${problem}`);
  };
  // Typed as literals, but a renderer bug could still leave them out at run time.
  const { apiVersion, kind } = object as { apiVersion?: unknown; kind?: unknown };
  check(typeof apiVersion === "string" && apiVersion !== "", "apiVersion missing");
  check(typeof kind === "string" && kind !== "", "kind missing");
  const name = object.metadata?.name ?? "";
  check(name.length <= 253 && SUBDOMAIN.test(name), `metadata.name ${JSON.stringify(name)}`);
  switch (object.kind) {
    case "ConfigMap": {
      const cm = object as ConfigMap;
      for (const [key, value] of Object.entries(cm.data ?? {})) {
        check(CONFIG_KEY.test(key), `data key ${JSON.stringify(key)}`);
        check(typeof value === "string", `data.${key} is not a string`);
      }
      break;
    }
    case "Pod": {
      const spec = (object as Pod).spec;
      check(spec !== undefined, "spec missing");
      if (spec !== undefined) problems.push(...validatePodSpec(spec, where));
      break;
    }
    case "Job": {
      const job = object as Job;
      const spec = job.spec;
      const podSpec = spec?.template.spec;
      check(podSpec !== undefined, "spec.template.spec missing");
      if (podSpec !== undefined) {
        check(
          podSpec.restartPolicy === "Never" || podSpec.restartPolicy === "OnFailure",
          "a Job's pods restart Never or OnFailure",
        );
        problems.push(...validatePodSpec(podSpec, where));
      }
      if (spec?.completionMode === "Indexed") {
        check(spec.completions !== undefined, "an Indexed Job needs completions");
      }
      break;
    }
    case "PersistentVolumeClaim": {
      const spec = (object as PersistentVolumeClaim).spec;
      problems.push(...validateClaimSpec(spec, where));
      break;
    }
    default:
      check(false, "unexpected kind");
  }
  return problems;
}

export function validatePodSpec(spec: PodSpec, where = "pod"): string[] {
  const problems: string[] = [];
  const check = (ok: boolean, problem: string) => {
    if (!ok) problems.push(`${where}: ${problem}`);
  };
  check(spec.containers.length > 0, "no containers");
  const volumes = new Map<string, Volume>();
  for (const volume of spec.volumes ?? []) {
    check(LABEL.test(volume.name) && volume.name.length <= 63, `volume name ${volume.name}`);
    check(!volumes.has(volume.name), `volume ${volume.name} twice`);
    volumes.set(volume.name, volume);
    const sources = VOLUME_SOURCES.filter(
      (key) => (volume as unknown as Record<string, unknown>)[key] !== undefined,
    );
    check(sources.length === 1, `volume ${volume.name} has ${sources.length} sources`);
    if (volume.configMap !== undefined)
      check(!!volume.configMap.name, `${volume.name}: configMap.name`);
    if (volume.persistentVolumeClaim !== undefined) {
      check(!!volume.persistentVolumeClaim.claimName, `${volume.name}: claimName`);
    }
    if (volume.nfs !== undefined) {
      check(!!volume.nfs.server, `${volume.name}: nfs.server`);
      check(volume.nfs.path.startsWith("/"), `${volume.name}: nfs.path`);
    }
    if (volume.emptyDir?.sizeLimit !== undefined) {
      check(QUANTITY.test(String(volume.emptyDir.sizeLimit)), `${volume.name}: sizeLimit`);
    }
    if (volume.ephemeral !== undefined) {
      const template = volume.ephemeral.volumeClaimTemplate;
      check(template !== undefined, `${volume.name}: volumeClaimTemplate`);
      if (template !== undefined)
        problems.push(...validateClaimSpec(template.spec, `${where}: ${volume.name}`));
    }
  }
  const containerNames = new Set<string>();
  const all: Array<[Container, "init" | "main"]> = [
    ...(spec.initContainers ?? []).map((c) => [c, "init"] as [Container, "init"]),
    ...spec.containers.map((c) => [c, "main"] as [Container, "main"]),
  ];
  for (const [container, kind] of all) {
    const at = `container ${container.name}`;
    check(LABEL.test(container.name) && container.name.length <= 63, `${at}: name`);
    check(!containerNames.has(container.name), `${at}: name used twice`);
    containerNames.add(container.name);
    check(typeof container.image === "string" && container.image.trim() !== "", `${at}: image`);
    const sidecar = kind === "init" && container.restartPolicy === "Always";
    if (kind === "main")
      check(container.restartPolicy === undefined, `${at}: restartPolicy on a main container`);
    if (kind === "init") {
      check(
        container.restartPolicy === undefined || container.restartPolicy === "Always",
        `${at}: an init container's restartPolicy can only be Always`,
      );
      if (!sidecar) {
        for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"] as const) {
          check(container[probe] === undefined, `${at}: ${probe} on a plain init container`);
        }
      }
    }
    const portNames = new Set<string>();
    for (const port of container.ports ?? []) {
      check(
        Number.isInteger(port.containerPort) &&
          port.containerPort >= 1 &&
          port.containerPort <= 65535,
        `${at}: containerPort`,
      );
      if (port.name !== undefined) {
        check(PORT_NAME.test(port.name), `${at}: port name ${port.name}`);
        portNames.add(port.name);
      }
    }
    for (const probe of [
      container.startupProbe,
      container.readinessProbe,
      container.livenessProbe,
    ]) {
      if (probe !== undefined) problems.push(...validateProbe(probe, portNames, `${where}: ${at}`));
    }
    const paths = new Set<string>();
    for (const mount of container.volumeMounts ?? []) {
      check(volumes.has(mount.name), `${at}: mount of unknown volume ${mount.name}`);
      check(mount.mountPath.startsWith("/"), `${at}: mountPath ${mount.mountPath}`);
      check(!paths.has(mount.mountPath), `${at}: two mounts at ${mount.mountPath}`);
      paths.add(mount.mountPath);
    }
    const env = new Set<string>();
    for (const variable of container.env ?? []) {
      check(ENV_NAME.test(variable.name), `${at}: env name ${variable.name}`);
      check(!env.has(variable.name), `${at}: env ${variable.name} twice`);
      env.add(variable.name);
      check(
        variable.value !== undefined || variable.valueFrom !== undefined,
        `${at}: env ${variable.name} has no value`,
      );
    }
    for (const source of container.envFrom ?? []) {
      check(
        !!(source.secretRef?.name ?? source.configMapRef?.name),
        `${at}: envFrom without a name`,
      );
    }
  }
  return problems;
}

function validateProbe(probe: Probe, portNames: ReadonlySet<string>, where: string): string[] {
  const problems: string[] = [];
  const handlers = [probe.httpGet, probe.tcpSocket, probe.exec, probe.grpc].filter(
    (h) => h !== undefined,
  );
  if (handlers.length !== 1) problems.push(`${where}: a probe needs exactly one handler`);
  const get = probe.httpGet;
  if (get !== undefined) {
    if (!(get.path ?? "").startsWith("/")) problems.push(`${where}: probe path`);
    const port = get.port;
    const ok = typeof port === "number" ? port >= 1 && port <= 65535 : portNames.has(port);
    if (!ok) problems.push(`${where}: probe port ${port}`);
  }
  for (const field of ["periodSeconds", "timeoutSeconds", "failureThreshold"] as const) {
    const value = probe[field];
    if (value !== undefined && !(Number.isInteger(value) && value >= 1))
      problems.push(`${where}: ${field}`);
  }
  return problems;
}

function validateClaimSpec(spec: PersistentVolumeClaimSpec | undefined, where: string): string[] {
  const problems: string[] = [];
  if (spec === undefined) return [`${where}: claim spec missing`];
  if ((spec.accessModes ?? []).length === 0) problems.push(`${where}: accessModes`);
  const storage = spec.resources?.requests?.storage;
  if (storage === undefined || !QUANTITY.test(String(storage))) {
    problems.push(`${where}: resources.requests.storage ${String(storage)}`);
  }
  return problems;
}
