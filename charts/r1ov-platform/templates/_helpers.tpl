{{/*
Name of the chart, overridable, cut to the 63 characters a label value allows.
*/}}
{{- define "r1ov-platform.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: the release name when it already contains the chart name,
otherwise release-chart; 63 characters at most (DNS label).
*/}}
{{- define "r1ov-platform.fullname" -}}
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
{{- define "r1ov-platform.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels of one component. Call with (dict "root" $ "component" "mlflow").
*/}}
{{- define "r1ov-platform.selectorLabels" -}}
app.kubernetes.io/name: {{ include "r1ov-platform.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Labels on every object of the chart. Call with (dict "root" $ "component" "rbac").
*/}}
{{- define "r1ov-platform.labels" -}}
helm.sh/chart: {{ include "r1ov-platform.chart" .root }}
{{ include "r1ov-platform.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: r1ov
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Image reference: registry/repository, then @digest when one is given, else :tag (default: the
chart's appVersion, which is the r1ov package version). Call with (dict "image" ... "root" $).
*/}}
{{- define "r1ov-platform.image" -}}
{{- $ref := printf "%s/%s" .image.registry .image.repository | trimPrefix "/" }}
{{- if .image.digest }}
{{- printf "%s@%s" $ref .image.digest }}
{{- else }}
{{- printf "%s:%s" $ref (.image.tag | default .root.Chart.AppVersion | toString) }}
{{- end }}
{{- end }}

{{/*
Service account the pipeline pods run as.
*/}}
{{- define "r1ov-platform.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (printf "%s-pipeline" (include "r1ov-platform.fullname" .)) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
In-cluster URL of the chart's MLflow server.
*/}}
{{- define "r1ov-platform.mlflowUrl" -}}
{{- printf "http://%s.%s.svc.cluster.local:%v" .Values.mlflow.name .Release.Namespace .Values.mlflow.service.port }}
{{- end }}

{{/*
The tracking URI the bundle uses: the value given, else the chart's own server; fails with
instructions when there is neither.
*/}}
{{- define "r1ov-platform.trackingUri" -}}
{{- if .Values.settings.mlflowTrackingUri }}
{{- .Values.settings.mlflowTrackingUri }}
{{- else if .Values.mlflow.enabled }}
{{- include "r1ov-platform.mlflowUrl" . }}
{{- else }}
{{- required "settings.mlflowTrackingUri is required when mlflow.enabled=false: set it to your MLflow tracking server (e.g. https://mlflow.example.com), or enable the chart's server with mlflow.enabled=true" .Values.settings.mlflowTrackingUri }}
{{- end }}
{{- end }}

{{/*
Host headers the MLflow server accepts (it rejects others, against DNS rebinding): every name
the Service answers to inside the cluster, with and without the port, plus localhost.
*/}}
{{- define "r1ov-platform.mlflowAllowedHosts" -}}
{{- $svc := .Values.mlflow.name }}
{{- $ns := .Release.Namespace }}
{{- $port := .Values.mlflow.service.port | toString }}
{{- $hosts := list "localhost" (printf "localhost:%s" $port) }}
{{- range $name := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) }}
{{- $hosts = append $hosts $name }}
{{- $hosts = append $hosts (printf "%s:%s" $name $port) }}
{{- end }}
{{- concat $hosts .Values.mlflow.extraAllowedHosts | join "," }}
{{- end }}

{{/*
The MLflow server's own service account (its cloud identity reaches the artifact store).
*/}}
{{- define "r1ov-platform.mlflowServiceAccountName" -}}
{{- if .Values.mlflow.serviceAccount.create }}
{{- default .Values.mlflow.name .Values.mlflow.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.mlflow.serviceAccount.name }}
{{- end }}
{{- end }}
