{{- define "warmcache.name" -}}{{ .Values.nameOverride | default "warmcache" | trunc 50 | trimSuffix "-" }}{{- end -}}
{{/* what object names start with: fullnameOverride, else the name (not the release: the names stay put) */}}
{{- define "warmcache.fullname" -}}{{ .Values.fullnameOverride | default (include "warmcache.name" .) | trunc 50 | trimSuffix "-" }}{{- end -}}
{{- define "warmcache.saController" -}}{{ .Values.serviceAccount.controller.name | default (printf "%s-controller" (include "warmcache.fullname" .)) }}{{- end -}}
{{- define "warmcache.saNode" -}}{{ .Values.serviceAccount.node.name | default (printf "%s-node" (include "warmcache.fullname" .)) }}{{- end -}}
{{- define "warmcache.driver" -}}warmcache.csi.dev{{- end -}}

{{- define "warmcache.labels" -}}
app.kubernetes.io/name: {{ include "warmcache.name" . }}
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

{{/* imagePullSecrets for every pod */}}
{{- define "warmcache.pullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The S3 endpoint's CA (s3CABundle) and the registries' (registryCABundle): env, mount and volume of the plugin containers. */}}
{{- define "warmcache.caEnv" -}}
{{- if .Values.s3CABundle.configMap }}
- {name: AWS_CA_BUNDLE, value: /etc/warmcache/s3-ca/{{ .Values.s3CABundle.key }}}
{{- end }}
{{- if .Values.registryCABundle.configMap }}
- {name: SSL_CERT_FILE, value: /etc/warmcache/registry-ca/{{ .Values.registryCABundle.key }}}
{{- end }}
{{- end }}

{{- define "warmcache.caMount" -}}
{{- if .Values.s3CABundle.configMap }}
- {name: s3-ca, mountPath: /etc/warmcache/s3-ca, readOnly: true}
{{- end }}
{{- if .Values.registryCABundle.configMap }}
- {name: registry-ca, mountPath: /etc/warmcache/registry-ca, readOnly: true}
{{- end }}
{{- end }}

{{- define "warmcache.caVolume" -}}
{{- if .Values.s3CABundle.configMap }}
- name: s3-ca
  configMap: {name: {{ .Values.s3CABundle.configMap }}}
{{- end }}
{{- if .Values.registryCABundle.configMap }}
- name: registry-ca
  configMap: {name: {{ .Values.registryCABundle.configMap }}}
{{- end }}
{{- end }}
