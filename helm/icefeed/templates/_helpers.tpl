{{/* Common labels. */}}
{{- define "icefeed.labels" -}}
app.kubernetes.io/name: icefeed
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{- end -}}

{{/* The image reference. */}}
{{- define "icefeed.image" -}}
{{- if not .Values.image.repository -}}
{{- fail "image.repository is required: set it to the icefeed image built from the repository's Dockerfile" -}}
{{- end -}}
{{- if .Values.image.tag -}}
{{ printf "%s:%s" .Values.image.repository .Values.image.tag }}
{{- else -}}
{{ .Values.image.repository }}
{{- end -}}
{{- end -}}

{{/* Name of the Secret holding the feeder token (key `token`). */}}
{{- define "icefeed.tokenSecretName" -}}
{{- if and .Values.feeder.token.existingSecret .Values.feeder.token.value -}}
{{- fail "feeder.token.value must be empty when feeder.token.existingSecret is set: the token lives only in the existing Secret, never in values" -}}
{{- end -}}
{{- default .Values.feeder.token.secretName .Values.feeder.token.existingSecret -}}
{{- end -}}

{{/* Selector of the feeder's pods (labels the Spark operator sets). */}}
{{- define "icefeed.feederSelector" -}}
sparkoperator.k8s.io/app-name: {{ .Values.feeder.name }}
{{- end -}}

{{/* envFrom: catalog settings and optional S3 keys. */}}
{{- define "icefeed.envFrom" -}}
{{- if .Values.catalog.existingSecret }}
- secretRef:
    name: {{ .Values.catalog.existingSecret }}
{{- end }}
{{- if .Values.s3.existingSecret }}
- secretRef:
    name: {{ .Values.s3.existingSecret }}
    optional: true
{{- end }}
{{- end -}}
