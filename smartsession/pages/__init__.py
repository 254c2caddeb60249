"""The logic of the two Voila pages, so that dashboards/student.ipynb and dashboards/teacher.ipynb stay thin.

``pages.student`` is the student's page, ``pages.teacher`` the teacher's live dashboard.
"""
