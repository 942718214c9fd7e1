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

{{- /* "true" when the replicas elect a leader on a Lease (leaderElection, or null and more than one replica). */ -}}
{{- define "kestrel.leaderElection" -}}
{{- if kindIs "invalid" .Values.leaderElection -}}
{{- if gt (int .Values.replicas) 1 }}true{{ end -}}
{{- else if .Values.leaderElection -}}
true
{{- end -}}
{{- end -}}

{{/* imagePullSecrets as comma-separated names, a parent chart's global.imagePullSecrets first: an entry is a name or
{name: ...}, the shape `helm create` scaffolds. The schema checks the chart's own list; a global entry is checked
here, as no schema of this chart covers a parent's values. */}}
{{- define "kestrel.imagePullSecretNames" -}}
{{- $names := list -}}
{{- $global := dig "imagePullSecrets" list (.Values.global | default dict) -}}
{{- range (concat $global .Values.imagePullSecrets) -}}
{{- $name := . -}}
{{- if not (kindIs "string" .) -}}
{{- $name = get . "name" | toString -}}
{{- end -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$" $name) -}}
{{- fail (printf "global.imagePullSecrets / imagePullSecrets: %q is not a Secret name (lowercase letters, digits, '-' and '.'); give each as a name or {name: NAME}" $name) -}}
{{- end -}}
{{- $names = append $names $name -}}
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
