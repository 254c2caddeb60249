"""The lesson around the measure: the teacher's plan, its check-ins, and the lessons before this one."""
