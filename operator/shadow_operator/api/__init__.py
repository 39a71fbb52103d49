"""The ShadowDeployment API: pydantic models per version, the source of the CRD."""
