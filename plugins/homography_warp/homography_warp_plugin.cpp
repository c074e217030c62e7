#include "homography_warp/homography_warp_plugin.h"

#include "common/checks.h"
#include "common/logging.h"
#include "common/plugin_names.h"
#include "common/tensor_checks.h"
#include "homography_warp/homography_warp_kernel.h"

#include <memory>

using namespace nvinfer1;

namespace semshare::plugin
{
namespace
{
constexpr char const* kName = "HomographyWarp";
constexpr int32_t kMaxExtent = 1 << 16;
} // namespace

HomographyWarpParams HomographyWarpParams::fromFields(PluginFieldCollection const* fc)
{
    FieldReader const fields(kName, fc, {"out_height", "out_width", "align_corners", "padding_mode"});
    HomographyWarpParams params;
    params.outHeight = fields.getInt("out_height", std::nullopt);
    params.outWidth = fields.getInt("out_width", std::nullopt);
    params.alignCorners = fields.getInt("align_corners", params.alignCorners);
    params.paddingMode = fields.getString("padding_mode", params.paddingMode);
    params.validate();
    return params;
}

void HomographyWarpParams::validate() const
{
    SEMSHARE_CHECK(outHeight >= 2 && outHeight <= kMaxExtent,
        std::string(kName) + ": out_height must be 2.." + std::to_string(kMaxExtent) + ", got "
            + std::to_string(outHeight));
    SEMSHARE_CHECK(outWidth >= 2 && outWidth <= kMaxExtent,
        std::string(kName) + ": out_width must be 2.." + std::to_string(kMaxExtent) + ", got "
            + std::to_string(outWidth));
    SEMSHARE_CHECK(alignCorners == 0 || alignCorners == 1,
        std::string(kName) + ": align_corners must be 0 or 1, got " + std::to_string(alignCorners));
    SEMSHARE_CHECK(paddingMode == "zeros",
        std::string(kName) + ": padding_mode must be 'zeros' in version 1, got '" + paddingMode + "'");
}

HomographyWarpPlugin::HomographyWarpPlugin(HomographyWarpParams const& params)
    : mParams(params)
{
    mParams.validate();
}

HomographyWarpPlugin::HomographyWarpPlugin(HomographyWarpPlugin const& other)
    : IPluginV3(other)
    , IPluginV3OneCore(other)
    , IPluginV3OneBuild(other)
    , IPluginV3OneRuntime(other)
    , mParams(other.mParams)
{
}

IPluginCapability* HomographyWarpPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

IPluginV3* HomographyWarpPlugin::clone() noexcept
{
    return guarded<IPluginV3*>("HomographyWarp::clone", nullptr,
        [&]() -> IPluginV3* { return std::make_unique<HomographyWarpPlugin>(*this).release(); });
}

char const* HomographyWarpPlugin::getPluginName() const noexcept
{
    return kName;
}

char const* HomographyWarpPlugin::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

char const* HomographyWarpPlugin::getPluginNamespace() const noexcept
{
    return kPluginNamespace;
}

int32_t HomographyWarpPlugin::getNbOutputs() const noexcept
{
    return 1;
}

int32_t HomographyWarpPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    return guarded<int32_t>("HomographyWarp::configurePlugin", -1, [&]() -> int32_t {
        SEMSHARE_CHECK(in != nullptr && out != nullptr && nbInputs == 2 && nbOutputs == 1,
            "HomographyWarp takes 2 inputs (src, src_from_dst) and has 1 output");
        Dims const& src = in[0].desc.dims;
        Dims const& h = in[1].desc.dims;
        SEMSHARE_CHECK(src.nbDims == 4, "HomographyWarp src must be (B, C, H, W), got " + dimsToString(src));
        SEMSHARE_CHECK(h.nbDims == 3 && extentsAgree(h.d[1], 3) && extentsAgree(h.d[2], 3),
            "HomographyWarp src_from_dst must be (B, 3, 3) or (1, 3, 3), got " + dimsToString(h));
        SEMSHARE_CHECK(h.d[0] < 0 || src.d[0] < 0 || h.d[0] == 1 || h.d[0] == src.d[0],
            "HomographyWarp src_from_dst batch must be 1 or the batch of src, got " + dimsToString(h) + " for src "
                + dimsToString(src));
        return 0;
    });
}

int32_t HomographyWarpPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    return guarded<int32_t>("HomographyWarp::getOutputDataTypes", -1, [&]() -> int32_t {
        SEMSHARE_CHECK(outputTypes != nullptr && inputTypes != nullptr && nbInputs == 2 && nbOutputs == 1,
            "HomographyWarp takes 2 inputs (src, src_from_dst) and has 1 output");
        SEMSHARE_CHECK(isFloatOrHalf(inputTypes[0]),
            "HomographyWarp src must be FLOAT or HALF, got " + dataTypeName(inputTypes[0]));
        SEMSHARE_CHECK(inputTypes[1] == DataType::kFLOAT,
            "HomographyWarp src_from_dst must be FLOAT, got " + dataTypeName(inputTypes[1]));
        outputTypes[0] = inputTypes[0];
        return 0;
    });
}

int32_t HomographyWarpPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs,
    DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs,
    IExprBuilder& exprBuilder) noexcept
{
    return guarded<int32_t>("HomographyWarp::getOutputShapes", -1, [&]() -> int32_t {
        SEMSHARE_CHECK(inputs != nullptr && outputs != nullptr && nbInputs == 2 && nbOutputs == 1,
            "HomographyWarp takes 2 inputs (src, src_from_dst) and has 1 output");
        SEMSHARE_CHECK(inputs[0].nbDims == 4 && inputs[1].nbDims == 3,
            "HomographyWarp inputs must be src (B, C, H, W) and src_from_dst (B, 3, 3), got ranks "
                + std::to_string(inputs[0].nbDims) + " and " + std::to_string(inputs[1].nbDims));
        IDimensionExpr const* height = exprBuilder.constant(mParams.outHeight);
        IDimensionExpr const* width = exprBuilder.constant(mParams.outWidth);
        SEMSHARE_CHECK(height != nullptr && width != nullptr, "HomographyWarp: IExprBuilder::constant failed");
        outputs[0].nbDims = 4;
        outputs[0].d[0] = inputs[0].d[0];
        outputs[0].d[1] = inputs[0].d[1];
        outputs[0].d[2] = height;
        outputs[0].d[3] = width;
        return 0;
    });
}

bool HomographyWarpPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    return guarded<bool>("HomographyWarp::supportsFormatCombination", false, [&]() -> bool {
        SEMSHARE_CHECK(inOut != nullptr && nbInputs == 2 && nbOutputs == 1 && pos >= 0 && pos < 3,
            "HomographyWarp: bad supportsFormatCombination query (pos " + std::to_string(pos) + ")");
        PluginTensorDesc const& desc = inOut[pos].desc;
        if (desc.format != TensorFormat::kLINEAR)
        {
            return false;
        }
        switch (pos)
        {
        case 0: return isFloatOrHalf(desc.type);
        case 1: return desc.type == DataType::kFLOAT;
        default: return desc.type == inOut[0].desc.type;
        }
    });
}

int32_t HomographyWarpPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    return guarded<int32_t>("HomographyWarp::onShapeChange", -1, [&]() -> int32_t {
        SEMSHARE_CHECK(in != nullptr && out != nullptr && nbInputs == 2 && nbOutputs == 1,
            "HomographyWarp takes 2 inputs (src, src_from_dst) and has 1 output");
        Dims const& src = in[0].dims;
        Dims const& h = in[1].dims;
        SEMSHARE_CHECK(src.nbDims == 4, "HomographyWarp src must be (B, C, H, W), got " + dimsToString(src));
        SEMSHARE_CHECK(h.nbDims == 3 && h.d[1] == 3 && h.d[2] == 3 && (h.d[0] == 1 || h.d[0] == src.d[0]),
            "HomographyWarp src_from_dst must be (B, 3, 3) or (1, 3, 3), got " + dimsToString(h) + " for src "
                + dimsToString(src));
        return 0;
    });
}

int32_t HomographyWarpPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
    void const* const* inputs, void* const* outputs, void* /*workspace*/, cudaStream_t stream) noexcept
{
    return guarded<int32_t>("HomographyWarp::enqueue", -1, [&]() -> int32_t {
        SEMSHARE_CHECK(inputDesc != nullptr && inputs != nullptr && outputs != nullptr,
            "HomographyWarp::enqueue: null descriptors or buffers");
        Dims const& src = inputDesc[0].dims;
        kernels::WarpShape shape{};
        shape.batch = static_cast<int>(src.d[0]);
        shape.channels = static_cast<int>(src.d[1]);
        shape.srcHeight = static_cast<int>(src.d[2]);
        shape.srcWidth = static_cast<int>(src.d[3]);
        shape.dstHeight = mParams.outHeight;
        shape.dstWidth = mParams.outWidth;
        shape.homographyBatch = static_cast<int>(inputDesc[1].dims.d[0]);
        shape.alignCorners = mParams.alignCorners != 0;
        SEMSHARE_CHECK(inputDesc[1].type == DataType::kFLOAT, "HomographyWarp src_from_dst must be FLOAT");
        float const* srcFromDst = static_cast<float const*>(inputs[1]);
        cudaError_t status = cudaErrorInvalidValue;
        if (inputDesc[0].type == DataType::kFLOAT)
        {
            status = kernels::launchHomographyWarp(
                static_cast<float const*>(inputs[0]), srcFromDst, static_cast<float*>(outputs[0]), shape, stream);
        }
        else if (inputDesc[0].type == DataType::kHALF)
        {
            status = kernels::launchHomographyWarp(
                static_cast<__half const*>(inputs[0]), srcFromDst, static_cast<__half*>(outputs[0]), shape, stream);
        }
        SEMSHARE_CHECK(status == cudaSuccess,
            std::string("HomographyWarp kernel launch failed: ") + cudaGetErrorString(status));
        return 0;
    });
}

IPluginV3* HomographyWarpPlugin::attachToContext(IPluginResourceContext* /*context*/) noexcept
{
    return clone();
}

PluginFieldCollection const* HomographyWarpPlugin::getFieldsToSerialize() noexcept
{
    return guarded<PluginFieldCollection const*>(
        "HomographyWarp::getFieldsToSerialize", nullptr, [&]() -> PluginFieldCollection const* {
            mSerialized.clear();
            mSerialized.addInt("out_height", mParams.outHeight);
            mSerialized.addInt("out_width", mParams.outWidth);
            mSerialized.addInt("align_corners", mParams.alignCorners);
            mSerialized.addString("padding_mode", mParams.paddingMode);
            return mSerialized.collection();
        });
}

HomographyWarpCreator::HomographyWarpCreator()
    : mFieldNames({{"out_height", PluginFieldType::kINT32}, {"out_width", PluginFieldType::kINT32},
        {"align_corners", PluginFieldType::kINT32}, {"padding_mode", PluginFieldType::kCHAR}})
{
}

IPluginV3* HomographyWarpCreator::createPlugin(
    char const* /*name*/, PluginFieldCollection const* fc, TensorRTPhase /*phase*/) noexcept
{
    return guarded<IPluginV3*>("HomographyWarp::createPlugin", nullptr, [&]() -> IPluginV3* {
        return std::make_unique<HomographyWarpPlugin>(HomographyWarpParams::fromFields(fc)).release();
    });
}

PluginFieldCollection const* HomographyWarpCreator::getFieldNames() noexcept
{
    return mFieldNames.collection();
}

char const* HomographyWarpCreator::getPluginName() const noexcept
{
    return kName;
}

char const* HomographyWarpCreator::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

char const* HomographyWarpCreator::getPluginNamespace() const noexcept
{
    return kPluginNamespace;
}

} // namespace semshare::plugin
