{{/*
Name of the chart, overridable, cut to the 63 characters a label value allows.
*/}}
{{- define "r1ov-inference.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: the release name when it already contains the chart name,
otherwise release-chart; 63 characters at most (DNS label).
*/}}
{{- define "r1ov-inference.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, as the helm.sh/chart label wants them.
*/}}
{{- define "r1ov-inference.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: stable for the life of a release (Deployments cannot change their selector).
*/}}
{{- define "r1ov-inference.selectorLabels" -}}
app.kubernetes.io/name: {{ include "r1ov-inference.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels on every object of the chart.
*/}}
{{- define "r1ov-inference.labels" -}}
helm.sh/chart: {{ include "r1ov-inference.chart" . }}
{{ include "r1ov-inference.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: inference
app.kubernetes.io/part-of: r1ov
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Service account name.
*/}}
{{- define "r1ov-inference.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "r1ov-inference.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image reference: registry/repository, then @digest when one is given, else :tag (default: the
chart's appVersion, which is the r1ov package version). Call with (dict "image" .Values.image "root" $).
*/}}
{{- define "r1ov-inference.image" -}}
{{- $ref := printf "%s/%s" .image.registry .image.repository | trimPrefix "/" }}
{{- if .image.digest }}
{{- printf "%s@%s" $ref .image.digest }}
{{- else }}
{{- printf "%s:%s" $ref (.image.tag | default .root.Chart.AppVersion | toString) }}
{{- end }}
{{- end }}

{{/*
Registered model name; rendering fails with instructions when it is missing.
*/}}
{{- define "r1ov-inference.modelName" -}}
{{- required "model.name is required: set it to the MLflow registered model to serve (--set model.name=r1ov-7b); the endpoint serves models:/<model.name>@<model.alias>" .Values.model.name }}
{{- end }}

{{/*
The models:/ URI the init container downloads: a pinned version wins over the alias.
*/}}
{{- define "r1ov-inference.modelUri" -}}
{{- $name := include "r1ov-inference.modelName" . }}
{{- if .Values.model.version }}
{{- printf "models:/%s/%v" $name .Values.model.version }}
{{- else }}
{{- printf "models:/%s@%s" $name .Values.model.alias }}
{{- end }}
{{- end }}

{{/*
Name the clients use in the OpenAI "model" field.
*/}}
{{- define "r1ov-inference.servedModelName" -}}
{{- .Values.model.servedModelName | default (include "r1ov-inference.modelName" .) }}
{{- end }}

{{/*
Name of the Secret that holds the API key; rendering fails with instructions when it is missing.
*/}}
{{- define "r1ov-inference.apiKeySecret" -}}
{{- required "apiKey.existingSecret is required: create a Secret holding the endpoint's API key (kubectl create secret generic r1ov-inference-api-key --from-literal=api-key=$(openssl rand -hex 32)) and set apiKey.existingSecret to its name" .Values.apiKey.existingSecret }}
{{- end }}

{{/*
Pod labels for the pods of the server.
*/}}
{{- define "r1ov-inference.podLabels" -}}
{{ include "r1ov-inference.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: inference
app.kubernetes.io/part-of: r1ov
# The model download reaches MLflow: the r1ov-platform chart's NetworkPolicy admits this label.
r1ov.io/mlflow-client: "true"
{{- with .Values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The ClusterStorageContainer of this release: cluster-scoped, so the name carries the namespace too.
*/}}
{{- define "r1ov-inference.storageContainerName" -}}
{{- printf "%s-%s-mlflow" .Release.Namespace (include "r1ov-inference.fullname" .) | trunc 253 | trimSuffix "-" }}
{{- end }}

{{/*
vLLM's arguments after the model directory (the Deployment's container and the KServe runtime's).
*/}}
{{- define "r1ov-inference.vllmArgs" -}}
- --served-model-name
- {{ include "r1ov-inference.servedModelName" . | quote }}
- --host
- "0.0.0.0"
- --port
- {{ .Values.vllm.port | quote }}
- --tensor-parallel-size
- {{ .Values.vllm.gpus | quote }}
- --max-model-len
- {{ .Values.vllm.maxModelLen | quote }}
- --gpu-memory-utilization
- {{ .Values.vllm.gpuMemoryUtilization | quote }}
{{- range .Values.vllm.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/*
vLLM's environment: the API key from its Secret (vLLM reads VLLM_API_KEY, keeping it off the command
line), caches under HOME on a volume (the root filesystem is read-only), nothing fetched from a hub.
*/}}
{{- define "r1ov-inference.vllmEnv" -}}
- name: VLLM_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "r1ov-inference.apiKeySecret" . }}
      key: {{ .Values.apiKey.key }}
# The root filesystem is read-only: every cache (vLLM, torch.compile, Triton, FlashInfer,
# Hugging Face) goes under HOME, an emptyDir.
- name: HOME
  value: /cache
- name: XDG_CACHE_HOME
  value: /cache
- name: HF_HOME
  value: /cache/huggingface
# The weights are local; nothing may be fetched from a hub at start.
- name: HF_HUB_OFFLINE
  value: "1"
- name: VLLM_NO_USAGE_STATS
  value: "1"
- name: DO_NOT_TRACK
  value: "1"
{{- with .Values.vllm.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Probes on vLLM's /health (no API key needed there). Call with (dict "port" PORT "root" $).
*/}}
{{- define "r1ov-inference.vllmProbes" -}}
{{- $port := .port }}
{{- with .root -}}
startupProbe:
  httpGet:
    path: /health
    port: {{ $port }}
  {{- toYaml .Values.probes.startup | nindent 2 }}
readinessProbe:
  httpGet:
    path: /health
    port: {{ $port }}
  {{- toYaml .Values.probes.readiness | nindent 2 }}
livenessProbe:
  httpGet:
    path: /health
    port: {{ $port }}
  {{- toYaml .Values.probes.liveness | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The template's model version, read by the download.
*/}}
{{- define "r1ov-inference.templateVersionEnv" -}}
# The version promotion or rollback wrote on the pod template (r1ov.io/model-version): when set it
# wins over the alias, so the pods serve what their template names and `kubectl rollout undo`
# serves the earlier version again (r1ov.registry.serving VERSION_ENV).
- name: R1OV_MODEL_VERSION
  valueFrom:
    fieldRef:
      fieldPath: metadata.annotations['r1ov.io/model-version']
{{- end }}
