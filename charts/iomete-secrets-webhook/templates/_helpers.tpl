{{/*
Names, labels and the checks values.schema.json cannot make (they need the release, or compare
two values). Object names are fixed (one install per cluster: the webhook configuration, the
ClusterRole and the CRD are cluster-wide), so docs, runbooks and kubectl commands match.
*/}}

{{- define "webhook.name" -}}
iomete-secrets-webhook
{{- end }}

{{/* The namespace of the secret stores (and of the Role that reads them). */}}
{{- define "webhook.storeNamespace" -}}
{{- .Values.config.storeNamespace | default .Release.Namespace }}
{{- end }}

{{/* Labels of every object; deploy/ sets the first three. */}}
{{- define "webhook.labels" -}}
app.kubernetes.io/name: {{ include "webhook.name" . }}
app.kubernetes.io/part-of: iomete
app.kubernetes.io/component: admission-webhook
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* What selects the webhook's pods (Deployment, Service, PDB); also what the objectSelector
excludes. Never change it: a Deployment's selector is immutable. */}}
{{- define "webhook.selectorLabels" -}}
app.kubernetes.io/name: {{ include "webhook.name" . }}
{{- end }}

{{- define "webhook.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}
{{- end }}

{{/* Seconds of a duration written as a number and one unit: ms, s, m or h (the schema allows
only those). */}}
{{- define "webhook.seconds" -}}
{{- if hasSuffix "ms" . -}}
{{- divf (trimSuffix "ms" .) 1000 -}}
{{- else if hasSuffix "s" . -}}
{{- trimSuffix "s" . | float64 -}}
{{- else if hasSuffix "m" . -}}
{{- mulf (trimSuffix "m" .) 60 -}}
{{- else -}}
{{- mulf (trimSuffix "h" .) 3600 -}}
{{- end }}
{{- end }}

{{/* Whether the Prometheus Operator objects are rendered. */}}
{{- define "webhook.operatorMonitoring" -}}
{{- if or (eq .Values.monitoring.mode "operator") (and (eq .Values.monitoring.mode "auto") (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1")) -}}
true
{{- end }}
{{- end }}

{{/* The p99 latency threshold of the alerts, in seconds. */}}
{{- define "webhook.latencyThreshold" -}}
{{- $rules := .Values.monitoring.rules }}
{{- if ne (toString $rules.latencyThresholdSeconds) "" -}}
{{- $rules.latencyThresholdSeconds -}}
{{- else -}}
{{- mulf (include "webhook.seconds" .Values.config.admissionTimeout | float64) 0.75 -}}
{{- end }}
{{- end }}

{{/*
The checks that compare two values (values.schema.json checks each alone). Each message says
what to change.
Included by the Deployment, so every rendering runs them.
*/}}
{{- define "webhook.validate" -}}
{{- $admission := include "webhook.seconds" .Values.config.admissionTimeout | float64 }}
{{- $vault := include "webhook.seconds" .Values.config.vault.timeout | float64 }}
{{- $check := include "webhook.seconds" .Values.config.vault.checkInterval | float64 }}
{{- if ge $admission (float64 .Values.admission.timeoutSeconds) }}
{{- fail (printf "config.admissionTimeout (%s) must be below admission.timeoutSeconds (%d): the webhook must answer its retriable 503 before the API server gives up on it" .Values.config.admissionTimeout (int .Values.admission.timeoutSeconds)) }}
{{- end }}
{{- if gt $vault (divf $admission 2) }}
{{- fail (printf "config.vault.timeout (%s) must be at most half of config.admissionTimeout (%s): one Vault lookup may log in and then read" .Values.config.vault.timeout .Values.config.admissionTimeout) }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (ge (int .Values.podDisruptionBudget.minAvailable) (int .Values.replicas)) }}
{{- fail (printf "podDisruptionBudget.minAvailable (%d) must be below replicas (%d), or no webhook pod could ever be evicted and node drains would block" (int .Values.podDisruptionBudget.minAvailable) (int .Values.replicas)) }}
{{- end }}
{{- if lt $check 5.0 }}
{{- fail (printf "config.vault.checkInterval (%s) must be at least 5s" .Values.config.vault.checkInterval) }}
{{- end }}
{{- if and (not .Values.broker.enabled) (or (eq .Values.broker.deliveryDefault "broker") (eq .Values.broker.deliveryRequired "broker") .Values.broker.defaultDomains .Values.broker.requiredDomains) }}
{{- fail "broker.deliveryDefault, broker.deliveryRequired or broker.*Domains ask for broker delivery, but broker.enabled is false: turn the broker on, or pods could not get their values" }}
{{- end }}
{{- end }}

{{/* The ConfigMap's data; optional keys only when set, as in config.env. */}}
{{- define "webhook.configData" -}}
features.secretsV2.enabled: {{ .Values.features.secretsV2.enabled | quote }}
domain-label: {{ .Values.config.domainLabel | quote }}
admission-timeout: {{ .Values.config.admissionTimeout | quote }}
log-format: {{ .Values.config.logFormat | quote }}
log-level: {{ .Values.config.logLevel | quote }}
{{- with .Values.config.adminNamespaces }}
admin-namespaces: {{ join "," . | quote }}
{{- end }}
vault-cache-ttl: {{ .Values.config.vault.cacheTTL | quote }}
vault-timeout: {{ .Values.config.vault.timeout | quote }}
vault-check-interval: {{ .Values.config.vault.checkInterval | quote }}
{{- with .Values.config.vault.staleIfError }}
vault-stale-if-error: {{ . | quote }}
{{- end }}
{{- if and .Values.broker.enabled .Values.broker.entrypoints }}
broker-entrypoints.json: {{ toJson .Values.broker.entrypoints | quote }}
{{- end }}
{{- end }}

{{/* The kubernetes.io/tls Secret the pods mount. */}}
{{- define "webhook.tlsSecret" -}}
{{- if eq .Values.tls.mode "secret" -}}
{{ .Values.tls.secret.name }}
{{- else -}}
{{ include "webhook.name" . }}-tls
{{- end }}
{{- end }}
