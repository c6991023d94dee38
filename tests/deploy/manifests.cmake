# The Kubernetes and KServe manifests: schemas, cross-references, and their command line run against the binary
# (tests/deploy/check_manifests.py); skipped (77) when the deploy venv cannot be installed from PyPI.
add_test(NAME Deploy.ManifestsValidAndConsistent
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/run_manifests_test.sh $<TARGET_FILE:halfserve_cli>)
set_tests_properties(Deploy.ManifestsValidAndConsistent PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300)
