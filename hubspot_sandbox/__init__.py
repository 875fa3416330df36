"""A local HubSpot for the demo and the tests (CRM v3 companies, properties, webhooks, fault
switches). A development tool, never deployed: `SandboxServer` in hubspot_sandbox.server,
`SandboxControl` in hubspot_sandbox.control, `warp-sync sandbox` on the command line."""
