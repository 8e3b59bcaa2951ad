{{/*
A Celery Deployment (worker or beat):
(dict "ctx" $ "component" "worker" "replicas" 1 "strategy" ... "args" ... "values" .Values.worker).
*/}}
{{- define "ai-gateway.celeryDeployment" -}}
{{- $ := .ctx }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "ai-gateway.fullname" $ }}-{{ .component }}
  labels:
    {{- include "ai-gateway.componentLabels" (dict "ctx" $ "component" .component) | nindent 4 }}
spec:
  replicas: {{ .replicas }}
  revisionHistoryLimit: 5
  strategy:
    {{- toYaml .strategy | nindent 4 }}
  selector:
    matchLabels:
      {{- include "ai-gateway.selectorLabels" (dict "ctx" $ "component" .component) | nindent 6 }}
  template:
    metadata:
      annotations:
        {{- include "ai-gateway.podAnnotations" $ | nindent 8 }}
      labels:
        {{- include "ai-gateway.componentLabels" (dict "ctx" $ "component" .component) | nindent 8 }}
        {{- with $.Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- include "ai-gateway.podCommon" (dict "ctx" $ "serviceAccountName" (include "ai-gateway.serviceAccountName" $)) | nindent 6 }}
      terminationGracePeriodSeconds: {{ .terminationGracePeriodSeconds }}
      containers:
        - name: {{ .component }}
          {{- include "ai-gateway.containerCommon" (dict "ctx" $ "resources" .values.resources) | nindent 10 }}
          args:
            {{- toYaml (concat .args .values.extraArgs) | nindent 12 }}
          envFrom:
            - configMapRef:
                name: {{ include "ai-gateway.fullname" $ }}
          env:
            {{- include "ai-gateway.secretEnv" $ | nindent 12 }}
{{- end }}
