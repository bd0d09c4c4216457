{{/* Labels every object of the release carries. */}}
{{- define "sticky-canary.labels" -}}
app.kubernetes.io/name: sticky-canary
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* The reference of image `name` (controller, filter): by digest when one is set. */}}
{{- define "sticky-canary.image" -}}
{{- $image := index .root.Values.images .name -}}
{{- $registry := required "images.registry is required: the registry the images were pushed to (see docs/istio.md)" .root.Values.images.registry -}}
{{- if $image.digest -}}
{{- if not (regexMatch "^sha256:[0-9a-f]{64}$" $image.digest) -}}
{{- fail (printf "images.%s.digest must be sha256: and 64 hex digits, got %q" .name $image.digest) -}}
{{- end -}}
{{ printf "%s/%s@%s" $registry $image.repository $image.digest }}
{{- else -}}
{{ printf "%s/%s:%s" $registry $image.repository ($image.tag | default .root.Chart.AppVersion) }}
{{- end -}}
{{- end }}
