"""The management REST API (`/api/v1`): a thin face over the service layer."""
