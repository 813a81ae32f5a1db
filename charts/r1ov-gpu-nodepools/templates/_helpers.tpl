{{/*
Name of the chart, overridable, cut to the 63 characters a label value allows.
*/}}
{{- define "r1ov-gpu-nodepools.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Chart name and version, as the helm.sh/chart label wants them.
*/}}
{{- define "r1ov-gpu-nodepools.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object of the chart.
*/}}
{{- define "r1ov-gpu-nodepools.labels" -}}
helm.sh/chart: {{ include "r1ov-gpu-nodepools.chart" . }}
app.kubernetes.io/name: {{ include "r1ov-gpu-nodepools.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: r1ov
{{- end }}

{{/*
Cluster-scoped name of one pool's object: <namePrefix>-<pool>. Pools are cluster-wide, so the
name is stable across releases instead of carrying the release name.
Call with (dict "root" $ "pool" "train").
*/}}
{{- define "r1ov-gpu-nodepools.poolName" -}}
{{- printf "%s-%s" .root.Values.namePrefix .pool | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The EKS cluster name; rendering fails with instructions when it is missing.
*/}}
{{- define "r1ov-gpu-nodepools.clusterName" -}}
{{- required "aws.clusterName is required with provider=aws: set it to your EKS cluster name (--set aws.clusterName=NAME); subnets and security groups are discovered by the tag karpenter.sh/discovery=NAME" .Values.aws.clusterName }}
{{- end }}

{{/*
Node labels of one pool: the pool label plus the chart-wide extras.
Call with (dict "root" $ "pool" "train").
*/}}
{{- define "r1ov-gpu-nodepools.nodeLabels" -}}
{{ .root.Values.poolLabel }}: {{ .pool }}
{{- with .root.Values.nodeLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}
