{{- define "warmcache.name" -}}warmcache{{- end -}}
{{- define "warmcache.driver" -}}warmcache.csi.dev{{- end -}}

{{- define "warmcache.labels" -}}
app.kubernetes.io/name: warmcache
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "warmcache.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* allowedSources, with each of node.sourceHostPaths as a file:// prefix */}}
{{- define "warmcache.allowedSources" -}}
{{- $all := list -}}
{{- range .Values.allowedSources }}{{ $all = append $all . }}{{ end -}}
{{- range .Values.node.sourceHostPaths }}{{ $all = append $all (printf "file://%s/" (trimSuffix "/" .)) }}{{ end -}}
{{- join "," $all -}}
{{- end -}}
