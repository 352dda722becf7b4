package main

// schemaJSON is a minimal Pulumi package schema for the subset the stand-in implements. Property names and
// types follow pulumi-command v1.2.1's schema; descriptions are omitted.
const schemaJSON = `{
  "name": "command",
  "version": "1.2.1",
  "description": "forge-edge's stand-in for pulumi-command v1.2.1 (remote.Command and remote.CopyToRemote only)",
  "config": {},
  "provider": {},
  "types": {
    "command:remote:Logging": {
      "type": "string",
      "enum": [
        {"value": "stdout"}, {"value": "stderr"}, {"value": "stdoutAndStderr"}, {"value": "none"}
      ]
    },
    "command:remote:ProxyConnection": {
      "type": "object",
      "properties": {
        "agentSocketPath": {"type": "string"},
        "dialErrorLimit": {"type": "integer", "default": 10},
        "host": {"type": "string"},
        "hostKey": {"type": "string"},
        "password": {"type": "string", "secret": true},
        "perDialTimeout": {"type": "integer", "default": 15},
        "port": {"type": "number", "default": 22},
        "privateKey": {"type": "string", "secret": true},
        "privateKeyPassword": {"type": "string", "secret": true},
        "user": {"type": "string", "default": "root"}
      },
      "required": ["host"]
    },
    "command:remote:Connection": {
      "type": "object",
      "properties": {
        "agentSocketPath": {"type": "string"},
        "dialErrorLimit": {"type": "integer", "default": 10},
        "host": {"type": "string"},
        "hostKey": {"type": "string"},
        "password": {"type": "string", "secret": true},
        "perDialTimeout": {"type": "integer", "default": 15},
        "port": {"type": "number", "default": 22},
        "privateKey": {"type": "string", "secret": true},
        "privateKeyPassword": {"type": "string", "secret": true},
        "proxy": {"$ref": "#/types/command:remote:ProxyConnection"},
        "user": {"type": "string", "default": "root"}
      },
      "required": ["host"]
    }
  },
  "resources": {
    "command:remote:Command": {
      "properties": {
        "addPreviousOutputInEnv": {"type": "boolean"},
        "connection": {"$ref": "#/types/command:remote:Connection", "secret": true},
        "create": {"type": "string"},
        "delete": {"type": "string"},
        "environment": {"type": "object", "additionalProperties": {"type": "string"}},
        "logging": {"$ref": "#/types/command:remote:Logging"},
        "stderr": {"type": "string"},
        "stdin": {"type": "string"},
        "stdout": {"type": "string"},
        "triggers": {"type": "array", "items": {"$ref": "pulumi.json#/Any"}, "replaceOnChanges": true},
        "update": {"type": "string"}
      },
      "required": ["connection", "stderr", "stdout"],
      "inputProperties": {
        "addPreviousOutputInEnv": {"type": "boolean", "default": true},
        "connection": {"$ref": "#/types/command:remote:Connection", "secret": true},
        "create": {"type": "string"},
        "delete": {"type": "string"},
        "environment": {"type": "object", "additionalProperties": {"type": "string"}},
        "logging": {"$ref": "#/types/command:remote:Logging"},
        "stdin": {"type": "string"},
        "triggers": {"type": "array", "items": {"$ref": "pulumi.json#/Any"}, "replaceOnChanges": true},
        "update": {"type": "string"}
      },
      "requiredInputs": ["connection"]
    },
    "command:remote:CopyToRemote": {
      "properties": {
        "connection": {"$ref": "#/types/command:remote:Connection", "secret": true},
        "remotePath": {"type": "string"},
        "source": {"$ref": "pulumi.json#/AssetOrArchive"},
        "triggers": {"type": "array", "items": {"$ref": "pulumi.json#/Any"}, "replaceOnChanges": true}
      },
      "required": ["connection", "remotePath", "source"],
      "inputProperties": {
        "connection": {"$ref": "#/types/command:remote:Connection", "secret": true},
        "remotePath": {"type": "string"},
        "source": {"$ref": "pulumi.json#/AssetOrArchive"},
        "triggers": {"type": "array", "items": {"$ref": "pulumi.json#/Any"}, "replaceOnChanges": true}
      },
      "requiredInputs": ["connection", "remotePath", "source"]
    }
  }
}`
