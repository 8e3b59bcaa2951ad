{{/*
Names and labels.
*/}}
{{- define "ai-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ai-gateway.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ai-gateway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "ai-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ai-gateway
{{- end }}

{{/* Selector labels of one component: (dict "ctx" $ "component" "web"). */}}
{{- define "ai-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ai-gateway.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "ai-gateway.componentLabels" -}}
{{ include "ai-gateway.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "ai-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ai-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ai-gateway.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Where the image's writable var directory is mounted (GATEWAY_VAR_DIR). */}}
{{- define "ai-gateway.varDir" -}}/app/var{{- end }}
{{/* Where the configuration Job finds the declarative configuration file. */}}
{{- define "ai-gateway.configDir" -}}/etc/ai-gateway{{- end }}

{{/*
The non-secret settings, as NAME: "value" (every name is one the gateway's
settings or the image's entrypoint read; tests/test_helm_env.py checks it).
The web, worker and beat pods take them from the ConfigMap, the hook Job
inline (it runs before the ConfigMap exists).
*/}}
{{- define "ai-gateway.settings" -}}
{{- $g := .Values.gateway }}
{{- $s := dict
  "GATEWAY_ENV" "production"
  "GATEWAY_VAR_DIR" (include "ai-gateway.varDir" .)
  "LOG_LEVEL" $g.logLevel
  "WEB_CONCURRENCY" (toString $g.workers)
  "FORWARDED_ALLOW_IPS" $g.forwardedAllowIps
  "GATEWAY_MAX_BODY_BYTES" (toString (int64 $g.maxBodyBytes))
  "GATEWAY_CACHE_MAX_ENTRY_BYTES" (toString (int64 $g.cache.maxEntryBytes))
  "GATEWAY_UPSTREAM_CONNECT_TIMEOUT" (toString $g.upstream.connectTimeout)
  "GATEWAY_UPSTREAM_READ_TIMEOUT" (toString $g.upstream.readTimeout)
  "GATEWAY_UPSTREAM_TOTAL_TIMEOUT" (toString $g.upstream.totalTimeout)
  "GATEWAY_SHUTDOWN_GRACE_SECONDS" (toString $g.upstream.totalTimeout)
  "GATEWAY_DRAIN_DELAY_SECONDS" "0"
  "GATEWAY_UPSTREAM_POOL_SIZE" (toString (int64 $g.upstream.poolSize))
  "GATEWAY_INITIAL_POOL_SIZE" (toString (int64 $g.client.initialPoolSize))
  "GATEWAY_DROP_EXCESS_REQUESTS" (toString $g.client.dropExcessRequests)
  "GATEWAY_ENABLE_LOGGING" (toString $g.client.enableLogging)
  "GATEWAY_ENFORCE_GOVERNANCE_HEADER" (toString $g.client.enforceGovernanceHeader)
  "GATEWAY_LOG_RETENTION_DAYS" (toString (int64 $g.ledger.retentionDays))
  "GATEWAY_ROLLUP_INTERVAL_SECONDS" (toString $g.ledger.rollupIntervalSeconds)
  "GATEWAY_BUDGET_CLOSE_DELAY_SECONDS" (toString $g.ledger.budgetCloseDelaySeconds)
  "GATEWAY_REDIS_FAILURE_MODE" ($g.cluster.redisFailureMode | default "closed")
}}
{{- with $g.defaultTeam }}
{{- $_ := set $s "GATEWAY_DEFAULT_TEAM" . }}
{{- end }}
{{- with $g.csrfTrustedOrigins }}
{{- $_ := set $s "CSRF_TRUSTED_ORIGINS" (join "," .) }}
{{- end }}
{{- range $name, $value := $g.extraEnv }}
{{- if hasKey $s $name }}
{{- fail (printf "gateway.extraEnv.%s: the chart sets %s itself; use its own value" $name $name) }}
{{- end }}
{{- if has $name (list "DJANGO_SECRET_KEY" "GATEWAY_ENCRYPTION_KEY" "DATABASE_URL" "REDIS_URL" "ALLOWED_HOSTS" "GATEWAY_CONFIG") }}
{{- fail (printf "gateway.extraEnv.%s: set by the chart from its own values (secrets from Secrets)" $name) }}
{{- end }}
{{- $_ := set $s $name (toString $value) }}
{{- end }}
{{- toYaml $s }}
{{- end }}

{{/* A URL carrying a password would put a secret in the manifests. */}}
{{- define "ai-gateway.checkUrl" -}}
{{- if or (regexMatch "^[^:/]+://[^/@]*:[^/@]*@" .url) (regexMatch "[?&]password=" .url) }}
{{- fail (printf "%s.url carries a password: put the whole URL in a Secret and set %s.existingSecret instead" .field .field) }}
{{- end }}
{{- end }}

{{/* One env entry from a URL value or a Secret: (dict "name" .. "field" .. "values" ..). */}}
{{- define "ai-gateway.urlEnv" -}}
{{- if .values.url }}
{{- include "ai-gateway.checkUrl" (dict "url" .values.url "field" .field) }}
- name: {{ .name }}
  value: {{ .values.url | quote }}
{{- else if .values.existingSecret.name }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .values.existingSecret.name }}
      key: {{ .values.existingSecret.key }}
{{- else }}
{{- fail (printf "%s: set %s.url or %s.existingSecret.name" .name .field .field) }}
{{- end }}
{{- end }}

{{/* The secrets every Django process needs, by reference. */}}
{{- define "ai-gateway.secretEnv" -}}
- name: DJANGO_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ required "gateway.secretKeySecret.name is required" .Values.gateway.secretKeySecret.name }}
      key: {{ .Values.gateway.secretKeySecret.key }}
- name: GATEWAY_ENCRYPTION_KEY
  valueFrom:
    secretKeyRef:
      name: {{ required "gateway.encryptionKeySecret.name is required" .Values.gateway.encryptionKeySecret.name }}
      key: {{ .Values.gateway.encryptionKeySecret.key }}
{{ include "ai-gateway.urlEnv" (dict "name" "DATABASE_URL" "field" "postgresql" "values" .Values.postgresql) | trim }}
{{- if .Values.gateway.cluster.enabled }}
{{ include "ai-gateway.urlEnv" (dict "name" "REDIS_URL" "field" "redis" "values" .Values.redis) | trim }}
{{- end }}
{{- end }}

{{/*
The container fields shared by web, worker, beat and the hook Job:
(dict "ctx" $ "resources" ...). The settings come from the ConfigMap.
*/}}
{{- define "ai-gateway.containerCommon" -}}
{{- $ := .ctx -}}
image: {{ include "ai-gateway.image" $ }}
imagePullPolicy: {{ $.Values.image.pullPolicy }}
securityContext:
  {{- toYaml $.Values.securityContext | nindent 2 }}
resources:
  {{- toYaml .resources | nindent 2 }}
volumeMounts:
  - name: tmp
    mountPath: /tmp
  - name: var
    mountPath: {{ include "ai-gateway.varDir" $ }}
{{- range .extraMounts }}
  - {{ toYaml . | nindent 4 | trim }}
{{- end }}
{{- end }}

{{/* The pod fields shared by web, worker, beat and the hook Job. */}}
{{- define "ai-gateway.podCommon" -}}
{{- $ := .ctx -}}
serviceAccountName: {{ .serviceAccountName }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml $.Values.podSecurityContext | nindent 2 }}
{{- with $.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: {{ $.Values.scratchSizeLimit }}
  - name: var
    emptyDir:
      sizeLimit: {{ $.Values.scratchSizeLimit }}
{{- range .extraVolumes }}
  - {{ toYaml . | nindent 4 | trim }}
{{- end }}
{{- end }}

{{/* Pod-template annotations: the ConfigMap's checksum rolls the pods when a setting changes. */}}
{{- define "ai-gateway.podAnnotations" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Checks of values that a JSON schema cannot express. Rendered (as nothing)
by the web Deployment, so every `helm template/install/upgrade` runs them.
*/}}
{{- define "ai-gateway.validate" -}}
{{- $g := .Values.gateway }}
{{- if not $g.cluster.enabled }}
{{- if or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) }}
{{- fail "gateway.cluster.enabled=false keeps limits and budgets in each process: run one replica (replicaCount: 1, autoscaling.enabled: false)" }}
{{- end }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not .Values.serviceMonitor.tokenSecret.name) }}
{{- fail "serviceMonitor.enabled needs serviceMonitor.tokenSecret.name: the Secret with the bearer token /metrics asks for (production closes /metrics without one)" }}
{{- end }}
{{- if and (not $g.client.enforceGovernanceHeader) (not $g.defaultTeam) }}
{{- fail "gateway.client.enforceGovernanceHeader=false needs gateway.defaultTeam: the team whose policy applies to requests without a virtual key" }}
{{- end }}
{{- /* Helm merges maps: a handler set in the values joins the default one. */}}
{{- $handlers := dict "livenessProbe" .Values.livenessProbe "readinessProbe" .Values.readinessProbe "startupProbe" .Values.startupProbe }}
{{- with .Values.lifecycle }}
{{- $_ := set $handlers "lifecycle.preStop" .preStop }}
{{- $_ := set $handlers "lifecycle.postStart" .postStart }}
{{- end }}
{{- range $name, $handler := $handlers }}
{{- $kinds := list }}
{{- range $kind := list "exec" "httpGet" "tcpSocket" "grpc" "sleep" }}
{{- if and $handler (get $handler $kind) }}
{{- $kinds = append $kinds $kind }}
{{- end }}
{{- end }}
{{- if gt (len $kinds) 1 }}
{{- fail (printf "%s has %s: keep one (set the others to null, e.g. %s.%s: null)" $name (join " and " $kinds) $name (first $kinds)) }}
{{- end }}
{{- end }}
{{- include "ai-gateway.validateConfig" . }}
{{- end }}

{{/*
The declarative configuration holds no secret and names only variables the
Job is given: apply_config would otherwise fail in the hook, or print a
generated virtual-key secret into the Job's logs.
*/}}
{{- define "ai-gateway.validateConfig" -}}
{{- $provided := list }}
{{- range .Values.gateway.configSecrets }}
{{- $provided = append $provided .env }}
{{- end }}
{{- $config := .Values.gateway.config | default dict }}
{{- range $p, $provider := $config.providers | default list }}
{{- range $k, $key := $provider.keys | default list }}
{{- $where := printf "gateway.config.providers[%d].keys[%d]" $p $k }}
{{- if hasKey $key "api_key" }}
{{- fail (printf "%s: api_key would put a provider key in the chart's values; name a variable with api_key_env and list it in gateway.configSecrets" $where) }}
{{- end }}
{{- if and $key.api_key_env (not (has $key.api_key_env $provided)) }}
{{- fail (printf "%s: api_key_env %s is not in gateway.configSecrets" $where $key.api_key_env) }}
{{- end }}
{{- end }}
{{- end }}
{{- $teams := list }}
{{- range $c, $customer := $config.customers | default list }}
{{- range $t, $team := $customer.teams | default list }}
{{- $teams = append $teams (dict "where" (printf "gateway.config.customers[%d].teams[%d]" $c $t) "team" $team) }}
{{- end }}
{{- end }}
{{- range $t, $team := $config.teams | default list }}
{{- $teams = append $teams (dict "where" (printf "gateway.config.teams[%d]" $t) "team" $team) }}
{{- end }}
{{- range $teams }}
{{- $where := .where }}
{{- range $v, $vkey := .team.virtual_keys | default list }}
{{- $keyWhere := printf "%s.virtual_keys[%d]" $where $v }}
{{- if $vkey.secret_env }}
{{- if not (has $vkey.secret_env $provided) }}
{{- fail (printf "%s: secret_env %s is not in gateway.configSecrets" $keyWhere $vkey.secret_env) }}
{{- end }}
{{- else if not (eq (toString $vkey.active) "false") }}
{{- fail (printf "%s: a virtual key declared in the chart needs secret_env (a generated secret would be printed into the Job's logs)" $keyWhere) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
ALLOWED_HOSTS of the web pods: the configured hosts, the ingress hosts, the
Service's DNS names, and the pod's own IP, since the kubelet's probes and
Prometheus address the pod by IP (Django answers 400 to an unknown Host).
$(POD_IP) is expanded by the kubelet; the bracketed form serves IPv6 pods.
*/}}
{{- define "ai-gateway.allowedHosts" -}}
{{- $fullname := include "ai-gateway.fullname" . }}
{{- $hosts := concat (list) .Values.gateway.allowedHosts }}
{{- if .Values.ingress.enabled }}
{{- range .Values.ingress.hosts }}
{{- $hosts = append $hosts .host }}
{{- end }}
{{- end }}
{{- $hosts = concat $hosts (list $fullname (printf "%s.%s" $fullname .Release.Namespace) (printf "%s.%s.svc" $fullname .Release.Namespace) (printf "%s.%s.svc.%s" $fullname .Release.Namespace .Values.clusterDomain) "$(POD_IP)" "[$(POD_IP)]") }}
{{- join "," (uniq $hosts) }}
{{- end }}
