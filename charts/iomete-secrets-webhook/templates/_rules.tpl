{{/*
The default alerts: the one source of the PrometheusRule (monitoring.mode operator/auto), of the
rules ConfigMap (mode annotations) and, rendered with the defaults by
scripts/generate-monitoring.sh, of deploy/monitoring/. Each alert has a runbook section in
docs/operations.md (anchor: the alert's name in lower case); tests/monitoring/rules.test.yaml
unit-tests them with promtool, and tests/chart.rs checks that every metric they read is in the
webhook's real /metrics output.

Metrics are aggregated by the scrape target's `namespace` label (what the PodMonitor and
ServiceMonitor attach); the webhook's metric names are unique, so no `job` is matched.
`{{"{{"}}` and `{{"}}"}}` below are Prometheus's own template delimiters, escaped from Helm.
*/}}

{{- define "webhook.alerts" -}}
{{- $rules := .Values.monitoring.rules }}
- alert: IometeSecretsWebhookNoReadyReplica
  # The namespace gauge is 0 until the namespace cache has listed once (the webhook turns ready
  # when its caches have synced), and absent when no replica is scraped.
  expr: absent(iomete_secrets_webhook_namespaces > 0)
  for: 5m
  labels:
    severity: critical
  annotations:
    summary: No iomete-secrets-webhook replica is up with its caches loaded.
    description: >-
      For 5 minutes no replica of the webhook has reported a loaded namespace cache, or none is
      scraped at all. Pods that reference secrets are refused (failurePolicy Fail) until one is
      ready; other pods are not affected.
- alert: IometeSecretsWebhookAdmissionErrors
  expr: |-
    sum by (namespace) (rate(iomete_secrets_webhook_admission_denials_total{code=~"5.."}[5m]))
      / sum by (namespace) (rate(iomete_secrets_webhook_admission_requests_total[5m]))
      > {{ $rules.errorRatio }}
  for: 10m
  labels:
    severity: critical
  annotations:
    summary: The webhook answers too many admissions with a 5xx error.
    description: >-
      {{"{{"}} $value | humanizePercentage {{"}}"}} of the admissions in {{"{{"}} $labels.namespace {{"}}"}} were
      answered 5xx (caches not current, Vault unreachable, timeouts, overload, an unusable
      VaultConfig) over the last 5 minutes. Those pods are refused; their controllers retry.
- alert: IometeSecretsWebhookLatencyNearTimeout
  expr: |-
    histogram_quantile(0.99,
      sum by (namespace, le) (rate(iomete_secrets_webhook_admission_duration_seconds_bucket[5m])))
      > {{ include "webhook.latencyThreshold" . }}
  for: 10m
  labels:
    severity: warning
  annotations:
    summary: The webhook's p99 admission latency is close to its timeout.
    description: >-
      The 99th percentile of the admission time in {{"{{"}} $labels.namespace {{"}}"}} is
      {{"{{"}} $value | humanizeDuration {{"}}"}}, above {{ include "webhook.latencyThreshold" . }}s; past
      the admission timeout ({{ .Values.config.admissionTimeout }}) pods are refused with a retriable 503.
- alert: IometeSecretsWebhookCachesStale
  # A cache is stale while its watch of the API server has failed and it re-lists; the webhook
  # refuses (retriable 503) every decision that needs it meanwhile.
  expr: |-
    min by (namespace, pod, cache) (iomete_secrets_webhook_cache_fresh) == 0
  for: 5m
  labels:
    severity: warning
  annotations:
    summary: A webhook replica's cache has not been current for 5 minutes.
    description: >-
      The {{"{{"}} $labels.cache {{"}}"}} cache of {{"{{"}} $labels.pod {{"}}"}} in {{"{{"}} $labels.namespace {{"}}"}} has
      not held a complete listing for 5 minutes (its watch of the API server failed and cannot
      re-list). Pods that need it are refused with a retriable 503.
- alert: IometeSecretsWebhookVaultConfigNotReady
  expr: |-
    min by (namespace, config) (iomete_secrets_webhook_vault_config_ready) == 0
  for: 15m
  labels:
    severity: warning
  annotations:
    summary: A VaultConfig's connection check has been failing for 15 minutes.
    description: >-
      The VaultConfig {{"{{"}} $labels.config {{"}}"}} fails its connection check (login, or the read
      probe on its prefix): its Ready condition is False, and pods that reference it are refused.
- alert: IometeSecretsWebhookCertificateExpiresSoon
  expr: |-
    min by (namespace) (iomete_secrets_webhook_serving_certificate_expiry_timestamp_seconds > 0)
      - time() < {{ $rules.certificateExpiryDays }} * 86400
  for: 15m
  labels:
    severity: warning
  annotations:
    summary: The webhook's serving certificate expires soon.
    description: >-
      The serving certificate of the webhook in {{"{{"}} $labels.namespace {{"}}"}} expires in
      {{"{{"}} $value | humanizeDuration {{"}}"}}. Renewal did not happen or did not reach the pods; once it
      expires the API server cannot call the webhook and pods that reference secrets are refused.
- alert: IometeSecretsWebhookDenialsSpike
  # 4xx only: a surge of 5xx is IometeSecretsWebhookAdmissionErrors. A reason with no denials
  # in the hour before counts as a baseline of 0.
  expr: |-
    sum by (namespace, reason) (rate(iomete_secrets_webhook_admission_denials_total{code=~"4.."}[10m])) > 0.05
    and
    sum by (namespace, reason) (rate(iomete_secrets_webhook_admission_denials_total{code=~"4.."}[10m]))
      > 3 * (
        sum by (namespace, reason) (rate(iomete_secrets_webhook_admission_denials_total{code=~"4.."}[1h] offset 10m))
        or
        sum by (namespace, reason) (rate(iomete_secrets_webhook_admission_denials_total{code=~"4.."}[10m])) * 0
      )
  for: 10m
  labels:
    severity: warning
  annotations:
    summary: Denials of one reason are spiking.
    description: >-
      Pods are denied for {{"{{"}} $labels.reason {{"}}"}} at {{"{{"}} printf "%.2f" $value {{"}}"}} a second, more than
      three times the rate of the hour before: a rollout with wrong references, a store or
      VaultConfig removed, or something probing the webhook.
{{- end }}

{{/* The rule groups, with monitoring.rules applied (disabled alerts, extra labels, runbooks). */}}
{{- define "webhook.ruleGroups" -}}
{{- $rules := .Values.monitoring.rules }}
{{- $alerts := list }}
{{- range (include "webhook.alerts" . | fromYamlArray) }}
{{- if not (has .alert $rules.disabled) }}
{{- $_ := set . "labels" (merge (dict) $rules.additionalAlertLabels .labels) }}
{{- $_ := set .annotations "runbook_url" (printf "%s#%s" $rules.runbookBaseURL (lower .alert)) }}
{{- $alerts = append $alerts . }}
{{- end }}
{{- end -}}
- name: iomete-secrets-webhook
  rules:
    {{- toYaml $alerts | nindent 4 }}
{{- end }}
