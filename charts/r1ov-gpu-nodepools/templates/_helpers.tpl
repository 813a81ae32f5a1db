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

{{/*
A pool's Karpenter node pools, as JSON {"groups": [{"suffix", "cards", "families", "types"}]}. Without
EFA: one, the pool's own requirements. With EFA: one per network-card count, since an EC2NodeClass
lists its EFA interfaces per card and p4d (4 cards), p5en (16) and p5 (32) differ: each family goes
to the group of its count in aws.efaNetworkCards; a pool whose families all share a count stays one
object with the pool's name, otherwise each carries the suffix -efa<count>. Every group's nodes
carry the pool's labels, so workloads select them all alike.
Call with (dict "root" $ "pool" "train" "spec" $spec).
*/}}
{{- define "r1ov-gpu-nodepools.awsGroups" -}}
{{- $aws := .spec.aws }}
{{- $families := $aws.instanceFamilies | default list }}
{{- $types := $aws.instanceTypes | default list }}
{{- if not ($aws.efa | default dict).enabled }}
{{- toJson (dict "groups" (list (dict "suffix" "" "cards" 0 "families" $families "types" $types))) }}
{{- else }}
{{- $table := .root.Values.aws.efaNetworkCards }}
{{- $candidates := $families }}
{{- if $types }}
{{- $candidates = list }}
{{- range $types }}
{{- $family := index (splitList "." .) 0 }}
{{- if or (not $families) (has $family $families) }}
{{- $candidates = append $candidates $family }}
{{- end }}
{{- end }}
{{- end }}
{{- if not $candidates }}
{{- fail (printf "pools.%s.aws.efa needs instanceFamilies or instanceTypes: the EFA interfaces depend on the instance family's network cards" .pool) }}
{{- end }}
{{- $byCards := dict }}
{{- range $family := uniq $candidates }}
{{- if not (hasKey $table $family) }}
{{- fail (printf "aws.efaNetworkCards has no entry for %s (pools.%s.aws.efa): add its network-card count, as EC2 reports it: aws ec2 describe-instance-types --filters Name=instance-type,Values='%s.*' --query 'InstanceTypes[].[InstanceType,NetworkInfo.MaximumNetworkCards]'" $family $.pool $family) }}
{{- end }}
{{- $key := printf "%03d" (int (index $table $family)) }}
{{- $group := get $byCards $key | default (dict "cards" (int (index $table $family)) "families" list "types" list) }}
{{- if $families }}
{{- $_ := set $group "families" (append $group.families $family) }}
{{- end }}
{{- range $types }}
{{- if eq (index (splitList "." .) 0) $family }}
{{- $_ := set $group "types" (append $group.types .) }}
{{- end }}
{{- end }}
{{- $_ := set $byCards $key $group }}
{{- end }}
{{- $groups := list }}
{{- range $key := keys $byCards | sortAlpha }}
{{- $group := get $byCards $key }}
{{- $_ := set $group "suffix" (ternary "" (printf "-efa%d" (int $group.cards)) (eq (len $byCards) 1)) }}
{{- $groups = append $groups $group }}
{{- end }}
{{- toJson (dict "groups" $groups) }}
{{- end }}
{{- end }}
