"""The ModelDeployment API: Pydantic models of the CRD, its conditions, errors and the CRD generator."""
