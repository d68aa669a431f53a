"""Moving data in and out: imports (parse, plan, apply in one transaction) and exports."""
