{{- define "kestrel.labels" -}}
app.kubernetes.io/name: kestrel
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kestrel.selectorLabels" -}}
app.kubernetes.io/name: kestrel
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "kestrel.fullname" -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The tag of Kestrel's own images: the chart's appVersion unless images.tag says otherwise. */}}
{{- define "kestrel.tag" -}}
{{- .Values.images.tag | default .Chart.AppVersion -}}
{{- end -}}

{{/* One of Kestrel's images: REGISTRY/NAME:TAG[-SUFFIX], and @DIGEST where images.digests names one for
NAME[-SUFFIX], so that a node runs exactly the image that was tested, whatever the tag points at later. */}}
{{- define "kestrel.image" -}}
{{- $suffix := .suffix | default "" -}}
{{- $key := printf "%s%s" .name (ternary (printf "-%s" $suffix) "" (ne $suffix "")) -}}
{{- $reference := printf "%s/%s:%s%s" .root.Values.images.registry .name (include "kestrel.tag" .root) (ternary (printf "-%s" $suffix) "" (ne $suffix "")) -}}
{{- $digest := index (.root.Values.images.digests | default dict) $key | default "" -}}
{{- ternary (printf "%s@%s" $reference $digest) $reference (ne $digest "") -}}
{{- end -}}

{{/* The operator's RBAC rules, kept in one file that a unit test checks against the code. */}}
{{- define "kestrel.rules" -}}
{{- .Files.Get "files/operator-rules.yaml" | fromYaml | toYaml -}}
{{- end -}}

{{/* imagePullSecrets as comma-separated names: an entry is a name or {name: ...}, the shape `helm create` scaffolds. */}}
{{- /* "true" when the replicas elect a leader on a Lease (leaderElection, or null and more than one replica). */ -}}
{{- define "kestrel.leaderElection" -}}
{{- if kindIs "invalid" .Values.leaderElection -}}
{{- if gt (int .Values.replicas) 1 }}true{{ end -}}
{{- else if .Values.leaderElection -}}
true
{{- end -}}
{{- end -}}

{{- define "kestrel.imagePullSecretNames" -}}
{{- $names := list -}}
{{- range .Values.imagePullSecrets -}}
{{- if kindIs "string" . -}}
{{- $names = append $names . -}}
{{- else -}}
{{- $names = append $names .name -}}
{{- end -}}
{{- end -}}
{{- join "," ($names | uniq) -}}
{{- end -}}

{{/* modelMetrics.podMonitor.labels as key=value pairs separated by commas, in key order. */}}
{{- define "kestrel.podMonitorLabels" -}}
{{- $pairs := list -}}
{{- range $key, $value := .Values.modelMetrics.podMonitor.labels -}}
{{- $pairs = append $pairs (printf "%s=%s" $key $value) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}
