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

{{/* Pod securityContext of every pod the chart renders. */}}
{{- define "icefeed.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext -}}
{{- end -}}

{{/* securityContext of every Spark container. */}}
{{- define "icefeed.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext -}}
{{- end -}}

{{/* The writable scratch emptyDirs (volumes) for a read-only root filesystem. */}}
{{- define "icefeed.scratchVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.scratch.sizeLimit }}
- name: spark-work-dir
  emptyDir:
    sizeLimit: {{ .Values.scratch.sizeLimit }}
{{- end -}}

{{/* Where the scratch emptyDirs are mounted: /tmp and Spark's working directory. */}}
{{- define "icefeed.scratchMounts" -}}
- name: tmp
  mountPath: /tmp
- name: spark-work-dir
  mountPath: /opt/spark/work-dir
{{- end -}}

{{/* Name of the feeder's TLS Secret (empty when TLS is off). */}}
{{- define "icefeed.tlsSecretName" -}}
{{- if .Values.feeder.tls.enabled -}}
{{- if not .Values.feeder.tls.existingSecret -}}
{{- fail "feeder.tls.existingSecret is required when feeder.tls.enabled: name a Secret of type kubernetes.io/tls (tls.crt, tls.key) in the release namespace" -}}
{{- end -}}
{{- .Values.feeder.tls.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* The coordinator endpoint clients use. */}}
{{- define "icefeed.endpoint" -}}
{{- printf "%s://%s-coordinator.%s.svc:%v" (ternary "grpc+tls" "grpc" (.Values.feeder.tls.enabled | default false)) .Values.feeder.name .Release.Namespace .Values.feeder.coordinatorPort -}}
{{- end -}}

{{/* The chart's sparkConf security defaults: authenticated, encrypted Spark RPC. */}}
{{- define "icefeed.sparkSecurityConf" -}}
spark.authenticate: "true"
spark.network.crypto.enabled: "true"
{{- end -}}

{{/* The PVC holding the coordinator's journal: feeder.journal.existingClaim, else <feeder.name>-journal. */}}
{{- define "icefeed.journalClaimName" -}}
{{- .Values.feeder.journal.existingClaim | default (printf "%s-journal" .Values.feeder.name) -}}
{{- end -}}

{{/* The node-local folder of short-circuit local reads (feeder.localReads), as a volume source. */}}
{{- define "icefeed.localReadsVolume" -}}
hostPath:
  path: {{ required "feeder.localReads.hostPath is required with feeder.localReads.enabled" .Values.feeder.localReads.hostPath }}
  type: {{ .Values.feeder.localReads.type | default "Directory" }}
{{- end -}}
